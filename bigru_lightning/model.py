"""The bidirectional GRU classifier as a plain ``torch.nn.Module`` (no Lightning here)."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

Pooling = Literal["final_state", "last_step", "mean", "max"]
POOLINGS: tuple[str, ...] = get_args(Pooling)


class BiGRU(nn.Module):
    """A (bi)directional GRU followed by a pooling over time and a linear head.

    Args:
        input_size: Number of features per time step.
        hidden_size: Hidden units per direction and layer.
        num_layers: Number of stacked GRU layers.
        num_classes: Number of output classes (logits per sequence).
        dropout: Dropout between GRU layers and before the head, in [0, 1).
        bidirectional: Run a backward direction as well as the forward one.
        pooling: How the per-step outputs become one vector per sequence:
            ``final_state`` (the last layer's final hidden state of each direction, concatenated:
            the whole sequence summarised in each direction), ``last_step`` (the output at the
            last valid step, the tutorial's ``out[:, -1]``; its backward half has seen one element
            only), ``mean`` or ``max`` over the valid steps.
    """

    def __init__(
        self,
        input_size: int = 1,
        hidden_size: int = 32,
        num_layers: int = 1,
        num_classes: int = 2,
        dropout: float = 0.0,
        bidirectional: bool = True,
        pooling: Pooling = "final_state",
    ) -> None:
        super().__init__()
        _check_positive("input_size", input_size)
        _check_positive("hidden_size", hidden_size)
        _check_positive("num_layers", num_layers)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_classes = num_classes
        self.bidirectional = bidirectional
        self.pooling: str = pooling
        self.num_directions = 2 if bidirectional else 1
        self.gru = nn.GRU(
            input_size=input_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=float(dropout) if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Linear(self.num_directions * hidden_size, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Return class logits of shape (batch, num_classes).

        Args:
            x: Sequences, shape (batch, time, features), padded at the end where lengths differ.
            lengths: Optional true length of each sequence, shape (batch,), each in [1, time].
        """
        if lengths is None:
            out, h_n = self.gru(x)
            summary = self._pool_full(out, h_n)
        else:
            summary = self._pool_packed(x, lengths)
        return self.head(self.dropout(summary))

    def _final_state(self, h_n: torch.Tensor) -> torch.Tensor:
        # h_n: (layers * directions, batch, hidden); the last layer's directions are at the end.
        last_layer = h_n[-self.num_directions :]
        return last_layer.transpose(0, 1).reshape(h_n.shape[1], -1)

    def _pool_full(self, out: torch.Tensor, h_n: torch.Tensor) -> torch.Tensor:
        if self.pooling == "final_state":
            return self._final_state(h_n)
        if self.pooling == "last_step":
            return out[:, -1]
        if self.pooling == "mean":
            return out.mean(dim=1)
        return out.amax(dim=1)

    def _pool_packed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths_cpu = lengths.detach().to("cpu", torch.int64)
        packed = pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
        packed_out, h_n = self.gru(packed)
        if self.pooling == "final_state":
            return self._final_state(h_n)
        out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.shape[1])
        steps = torch.arange(out.shape[1], device=out.device)
        valid = steps[None, :] < lengths.to(out.device)[:, None]  # (batch, time)
        if self.pooling == "last_step":
            last = (lengths.to(out.device) - 1).clamp(min=0)
            return out[torch.arange(out.shape[0], device=out.device), last]
        if self.pooling == "mean":
            total = (out * valid[..., None]).sum(dim=1)
            return total / lengths.to(out.device, out.dtype)[:, None]
        masked = out.masked_fill(~valid[..., None], float("-inf"))
        return masked.amax(dim=1)


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
