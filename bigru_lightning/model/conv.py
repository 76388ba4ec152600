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

from __future__ import annotations

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

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """Block output (batch, out_channels, time), padded steps of ``x`` already zero.

        ``valid`` (batch, 1, time) is 1.0 at valid steps and 0.0 at padded ones (``x``'s dtype); None: all
        valid. The output's padded steps are not zero (the ReLU of the normalised bias): the next block
        or the pooling multiplies them by ``valid``.
        """
        x = self.conv(functional.pad(x, (self.pad_before, self.pad_after)))
        if valid is None or not self.training:
            return functional.relu(self.norm(x))
        return functional.relu(self._masked_batch_norm(x, valid))

    def _masked_batch_norm(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Training-mode batch norm whose statistics (and running statistics) come from valid steps only."""
        norm = self.norm
        count = valid.sum()  # valid (batch, step) pairs
        mean = (x * valid).sum(dim=(0, 2)) / count
        deviation = x - mean[None, :, None]
        variance = (deviation * valid).square().sum(dim=(0, 2)) / count
        running_mean, running_var = norm.running_mean, norm.running_var
        if running_mean is not None and running_var is not None:
            with torch.no_grad():
                momentum = 0.1 if norm.momentum is None else norm.momentum
                unbiased = variance * count / (count - 1).clamp(min=1.0)
                running_mean.lerp_(mean.detach(), momentum)
                running_var.lerp_(unbiased.detach(), momentum)
                if norm.num_batches_tracked is not None:
                    norm.num_batches_tracked.add_(1)
        scale = torch.rsqrt(variance + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight
        if norm.bias is None:
            return deviation * scale[None, :, None]
        return torch.addcmul(norm.bias[None, :, None], deviation, scale[None, :, None])


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

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
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
