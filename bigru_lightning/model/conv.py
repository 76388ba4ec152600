"""The fully convolutional (FCN) branch of GRU-FCN / LSTM-FCN, masked so that padding never counts.

Blocks of ``Conv1d -> BatchNorm -> ReLU`` with 'same' padding (Karim et al. 2017, LSTM-FCN; Elsayed
et al. 2018, GRU-FCN: 128/256/128 channels, kernels 8/5/3), then global average pooling over the valid
steps. Padding is handled so that a padded sequence gives exactly what it gives alone:

- before every convolution the padded steps are set to zero, which is what the 'same' zero padding
  of the sequence alone would put there;
- in training, batch-norm statistics are taken over valid steps only (eval mode uses the running
  statistics, a per-step affine map);
- the average over time counts valid steps only.
"""

# No ``from __future__ import annotations`` here: TorchScript reads the signature of the ``@torch.jit.unused``
# training-only batch norm below (when it compiles the blocks) and cannot resolve it as a string.
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional

from bigru_lightning.model.steps import valid_steps


class ConvBlock(nn.Module):
    """``Conv1d`` ('same' padding, stride 1) -> masked ``BatchNorm1d`` -> ``ReLU`` on (batch, channels, time).

    Args:
        in_channels: Channels entering the block.
        out_channels: Filters of the convolution.
        kernel_size: Width of the filters; 'same' padding puts ``(k-1)//2`` zeros before, ``k//2`` after.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.pad_before = (kernel_size - 1) // 2
        self.pad_after = kernel_size // 2
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor, valid: Optional[torch.Tensor]) -> torch.Tensor:  # noqa: UP045 (TorchScript)
        """Block output (batch, out_channels, time), padded steps of ``x`` already zero.

        ``valid`` (batch, 1, time) is 1.0 at valid steps and 0.0 at padded ones (``x``'s dtype); None: all
        valid. The output's padded steps are not zero (the ReLU of the normalised bias): the next block
        or the pooling multiplies them by ``valid``.
        """
        x = self.conv(functional.pad(x, (self.pad_before, self.pad_after)))
        if valid is None or not self.training:
            return functional.relu(self.norm(x))
        return functional.relu(self._masked_batch_norm(x, valid))

    @torch.jit.unused
    def _masked_batch_norm(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Training-mode batch norm whose statistics (and running statistics) come from valid steps only."""
        norm = self.norm
        weight = norm.weight if norm.weight is not None else x.new_ones(x.shape[1])
        bias = norm.bias if norm.bias is not None else x.new_zeros(x.shape[1])
        out, mean, variance, count = MaskedBatchNorm.apply(x, valid, weight, bias, norm.eps)
        running_mean, running_var = norm.running_mean, norm.running_var
        if running_mean is not None and running_var is not None:
            with torch.no_grad():
                momentum = 0.1 if norm.momentum is None else norm.momentum
                unbiased = variance * count / (count - 1).clamp(min=1.0)
                running_mean.lerp_(mean, momentum)
                running_var.lerp_(unbiased, momentum)
                if norm.num_batches_tracked is not None:
                    norm.num_batches_tracked.add_(1)
        return out


class MaskedBatchNorm(torch.autograd.Function):
    """Training-mode batch norm over (batch, channels, time) whose statistics count valid steps only.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` at every step, ``mean`` and ``var`` (biased) over
    the steps where ``valid`` (batch, 1, time) is 1. Autograd through those formulas records a dozen
    full-size operations backward; this backward is the closed form (four full-size operations):

    ``dx = scale * (dy - valid * (sum(dy) + dev * sum(dy * dev) / (var + eps)) / count)``, the sums over all
    steps (``y`` depends on ``mean`` and ``var`` at padded steps too), ``dev = x - mean``, ``scale =
    weight / sqrt(var + eps)``. Checked against autograd through the formulas in ``tests/test_model.py``.

    ``forward(x, valid, weight, bias, eps)`` returns ``(y, mean, var, count)``; only ``y`` carries a gradient.
    """

    @staticmethod
    def forward(  # noqa: D102
        ctx: Any, x: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        count = valid.sum()  # valid (batch, step) pairs
        mean = (x * valid).sum(dim=(0, 2)) / count
        deviation = x - mean[None, :, None]
        variance = (deviation * valid * deviation).sum(dim=(0, 2)) / count
        inverse_std = torch.rsqrt(variance + eps)
        scale = inverse_std * weight
        out = torch.addcmul(bias[None, :, None], deviation, scale[None, :, None])
        ctx.save_for_backward(valid, deviation, inverse_std, scale, count)
        ctx.mark_non_differentiable(mean, variance, count)
        return out, mean, variance, count

    @staticmethod
    def backward(  # noqa: D102
        ctx: Any, grad_out: torch.Tensor, *unused: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, torch.Tensor | None, torch.Tensor | None, None]:
        valid, deviation, inverse_std, scale, count = ctx.saved_tensors
        grad_sum = grad_out.sum(dim=(0, 2))  # d loss / d bias
        grad_dev_sum = (grad_out * deviation).sum(dim=(0, 2))  # d loss / d weight, times sqrt(var + eps)
        grad_x = None
        if ctx.needs_input_grad[0]:
            shift = (scale * grad_sum / count)[None, :, None]
            slope = (scale * inverse_std.square() * grad_dev_sum / count)[None, :, None]
            through_statistics = torch.addcmul(shift, deviation, slope)
            grad_x = torch.addcmul(grad_out * scale[None, :, None], valid, through_statistics, value=-1)
        return grad_x, None, grad_dev_sum * inverse_std, grad_sum, None


class ConvBranch(nn.Module):
    """FCN branch: :class:`ConvBlock` s, then the mean over valid steps -> (batch, last channels).

    Args:
        input_size: Features per step.
        channels: Filters of each block, e.g. ``[128, 256, 128]``.
        kernels: Kernel width of each block, as many as ``channels``, e.g. ``[8, 5, 3]``.
    """

    def __init__(self, input_size: int, channels: list[int], kernels: list[int]) -> None:
        super().__init__()
        widths = [input_size, *channels]
        self.blocks = nn.ModuleList(
            ConvBlock(widths[number], widths[number + 1], kernel) for number, kernel in enumerate(kernels)
        )
        self.output_size = channels[-1]

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045
        """Global average over valid steps of the last block's output (batch, channels[-1]).

        Args:
            x: Sequences (batch, time, features), padded at the end.
            lengths: Valid steps per sequence (batch,); None: all steps are valid.
        """
        h = x.transpose(1, 2)
        if lengths is None:
            for block in self.blocks:
                h = block(h, None)
            return h.mean(dim=2)
        mask = valid_steps(lengths, x.shape[1]).unsqueeze(1)
        h = h.masked_fill(~mask, 0.0)  # whatever the padding holds (a NaN too): zero, as 'same' padding puts
        valid = mask.to(h.dtype)  # within the branch every value is finite: a product masks (cheaper)
        for number, block in enumerate(self.blocks):
            h = block(h if number == 0 else h * valid, valid)
        return (h * valid).sum(dim=2) / lengths.to(h.dtype).unsqueeze(1)
