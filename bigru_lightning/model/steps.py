"""Time-step bookkeeping shared by every block: which steps are valid, and gathers along time.

Sequences are padded at the end: row ``b`` holds ``lengths[b]`` valid steps followed by padding whose
values are arbitrary. Every block reads valid steps only, through the helpers below.
"""

from __future__ import annotations

import torch


def valid_steps(lengths: torch.Tensor, time: int) -> torch.Tensor:
    """Boolean mask (batch, time): True where step ``t < lengths[b]``."""
    steps = torch.arange(time, device=lengths.device).unsqueeze(0)
    return steps < lengths.unsqueeze(1)


def full_lengths(x: torch.Tensor) -> torch.Tensor:
    """Lengths (batch,) int64 of a batch ``x`` (batch, time, ...) whose sequences fill every step."""
    return torch.full((x.shape[0],), x.shape[1], dtype=torch.int64, device=x.device)


def reversal_index(lengths: torch.Tensor, time: int) -> torch.Tensor:
    """Index (batch, time) that reverses each sequence within its length: ``t -> lengths-1-t``; padding stays put."""
    steps = torch.arange(time, device=lengths.device).unsqueeze(0)
    lengths = lengths.to(torch.int64).unsqueeze(1)
    return torch.where(steps < lengths, lengths - 1 - steps, steps)


def gather_steps(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[b, index[b, t]]`` for every row ``b`` and step ``t``; ``values`` is (batch, time, channels)."""
    return torch.gather(values, 1, index.unsqueeze(2).expand(-1, -1, values.shape[2]))


def step_at(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[b, index[b]]``: one step per row, shape (batch, channels)."""
    return gather_steps(values, index.unsqueeze(1)).squeeze(1)
