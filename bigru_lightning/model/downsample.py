"""Shortening long sequences before the GRU: the mean of every ``factor`` consecutive valid steps.

A GRU reads its steps one after the other, so its time (and how far back it must remember) grows with
the length; averaging windows of ``factor`` steps (stride ``factor``) divides both by ``factor``. A
sequence of length ``L`` becomes ``ceil(L / factor)`` steps; the last window averages the valid steps
it holds only (padding never counts), so a padded sequence gives exactly what it gives alone.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from bigru_lightning.model.steps import full_lengths, valid_steps


class TimeDownsample(nn.Module):
    """Non-overlapping mean over windows of ``factor`` steps; ``factor`` 1 passes everything through.

    Args:
        factor: Window and stride, a positive integer.
    """

    def __init__(self, factor: int = 1) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the shortened sequences (batch, ceil(time / factor), features) and their lengths.

        Args:
            x: Sequences (batch, time, features), padded at the end.
            lengths: Valid steps per sequence (batch,); None (all valid) stays None.
        """
        if self.factor == 1:
            return x, lengths
        counted = full_lengths(x) if lengths is None else lengths
        h = x.transpose(1, 2)
        if lengths is not None:
            h = h.masked_fill(~valid_steps(lengths, x.shape[1]).unsqueeze(1), 0.0)
        # Zero padding of factor-1 steps at the end completes the last window; the count below divides
        # each window's sum by its number of valid steps.
        means = functional.avg_pool1d(functional.pad(h, (0, self.factor - 1)), self.factor, self.factor)
        starts = torch.arange(means.shape[2], device=x.device).unsqueeze(0) * self.factor
        counts = (counted.unsqueeze(1) - starts).clamp(min=1, max=self.factor).to(x.dtype)
        shortened = (means * (self.factor / counts).unsqueeze(1)).transpose(1, 2).contiguous()
        if lengths is None:
            return shortened, None
        return shortened, torch.div(lengths + self.factor - 1, self.factor, rounding_mode="floor")
