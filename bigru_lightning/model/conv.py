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
        """Block output (batch, out_channels, time), zero at padded steps; padded steps of ``x`` already zero.

        ``valid`` (batch, time) is True at valid steps and False at padded ones; None: all valid.
        """
        x = self.conv(functional.pad(x, (self.pad_before, self.pad_after)))
        if valid is None:
            return functional.relu(self.norm(x))
        if not self.training:  # the running statistics: a per-step affine map, then padding set to zero
            return functional.relu(self.norm(x)).masked_fill(~valid.unsqueeze(1), 0.0)
        return self._masked_batch_norm_relu(x, valid)

    def _masked_batch_norm_relu(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Training-mode batch norm and ReLU whose statistics (and running statistics) come from valid steps only.

        The valid steps are gathered into one (steps, channels) batch for ``BatchNorm1d`` (torch's fused
        kernel and its backward, the running statistics updated by it), and put back in place with zeros
        at the padded steps: a few operations where the same statistics written out took about twenty
        (most of the branch's cost on variable-length data).
        """
        steps = x.transpose(1, 2)  # (batch, time, channels)
        normalised = functional.relu(self.norm(steps[valid]))  # (valid steps, channels)
        out = steps.new_zeros(steps.shape).index_put((valid,), normalised)
        return out.transpose(1, 2)


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
        valid = valid_steps(lengths, x.shape[1])
        h = h.masked_fill(~valid.unsqueeze(1), 0.0)  # whatever the padding holds (a NaN too): zero, as 'same' pads
        for block in self.blocks:
            h = block(h, valid)  # zero at padded steps, as the next convolution's 'same' padding needs
        return h.sum(dim=2) / lengths.to(h.dtype).unsqueeze(1)
