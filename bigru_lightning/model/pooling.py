"""Poolings over time: how the recurrent outputs become one vector per sequence. Each is written once.

Every pooling is a module ``forward(out, lengths) -> (batch, size)`` reading the valid steps of ``out``
(batch, time, size) only; ``lengths`` (batch,) is always given (the network fills it in for
full-length batches). A new pooling is one class here plus its name in :data:`Pooling` and
:data:`POOLING_CLASSES`.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from bigru_lightning.model.steps import step_at, valid_steps

Pooling = Literal["final_state", "last_step", "mean", "max", "attention"]
POOLINGS: tuple[str, ...] = get_args(Pooling)


class TimePooling(nn.Module):
    """Base of every pooling: built from the GRU's shape, called as ``forward(out, lengths)``.

    Args:
        hidden_size: Hidden units per direction; ``out`` holds the forward half first.
        bidirectional: Whether ``out`` holds a backward half after the forward one.
    """

    #: True when the summary is each direction's final hidden state, which the GRUs give directly
    #: for sequences that fill every step.
    reads_final_states: bool = False

    def __init__(self, hidden_size: int, bidirectional: bool) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.size = (2 if bidirectional else 1) * hidden_size

    def forward(self, out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One vector (batch, size) per sequence from ``out`` (batch, time, size) and ``lengths`` (batch,)."""
        raise NotImplementedError


class FinalState(TimePooling):
    """Each direction's final hidden state: forward output at the last valid step, backward output at step 0.

    For batches without lengths the network takes the same vector from the GRUs' final states instead
    (:meth:`~bigru_lightning.model.recurrent.StackedGRU.final_states`, faster to train).
    """

    reads_final_states = True

    def forward(self, out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Both directions' summaries of the whole sequence, concatenated (batch, size)."""
        forward_final = step_at(out[:, :, : self.hidden_size], lengths - 1)
        if not self.bidirectional:
            return forward_final
        return torch.cat([forward_final, out[:, 0, self.hidden_size :]], dim=1)


class LastStep(TimePooling):
    """The output at the last valid step (the tutorial's ``out[:, -1]``; its backward half saw one step)."""

    def forward(self, out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``out[b, lengths[b] - 1]`` (batch, size)."""
        return step_at(out, lengths - 1)


class MeanOverTime(TimePooling):
    """The mean of the outputs over the valid steps."""

    def forward(self, out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Masked mean (batch, size)."""
        valid = valid_steps(lengths, out.shape[1]).unsqueeze(2)
        total = out.masked_fill(~valid, 0.0).sum(dim=1)
        return total / lengths.to(out.dtype).unsqueeze(1)


class MaxOverTime(TimePooling):
    """The element-wise maximum of the outputs over the valid steps."""

    def forward(self, out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Masked maximum (batch, size)."""
        valid = valid_steps(lengths, out.shape[1]).unsqueeze(2)
        return out.masked_fill(~valid, float("-inf")).amax(dim=1)


class Attention(TimePooling):
    """Additive attention over the valid steps: ``softmax_t(v . tanh(W out_t + b))``-weighted sum of ``out_t``.

    The scoring layer is as wide as ``out`` (one ``Linear(size, size)`` and one ``Linear(size, 1)``).
    """

    def __init__(self, hidden_size: int, bidirectional: bool) -> None:
        super().__init__(hidden_size, bidirectional)
        self.project = nn.Linear(self.size, self.size)
        self.score = nn.Linear(self.size, 1, bias=False)

    def forward(self, out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Attention-weighted mean (batch, size); padded steps get weight 0."""
        valid = valid_steps(lengths, out.shape[1])
        scores = self.score(torch.tanh(self.project(out))).squeeze(2)
        weights = scores.masked_fill(~valid, float("-inf")).softmax(dim=1)
        values = out.masked_fill(~valid.unsqueeze(2), 0.0)
        return torch.bmm(weights.unsqueeze(1), values).squeeze(1)


POOLING_CLASSES: dict[str, type[TimePooling]] = {
    "final_state": FinalState,
    "last_step": LastStep,
    "mean": MeanOverTime,
    "max": MaxOverTime,
    "attention": Attention,
}


def make_pooling(name: str, hidden_size: int, bidirectional: bool) -> TimePooling:
    """The pooling called ``name`` (one of :data:`POOLINGS`) for a GRU of ``hidden_size`` units per direction."""
    return POOLING_CLASSES[name](hidden_size, bidirectional)
