"""The classifier network as a plain ``torch.nn.Module`` (no Lightning here): one implementation, trained and exported.

``x -> [downsample] -> stacked (bi)GRU -> pooling over valid steps ─┐
  ├──> [FCN branch: conv blocks -> mean over valid steps] ──────────┤
  └──> [random-kernel branch: fixed MiniRocket kernels -> proportions]┴─> concat -> dropout -> linear head``

The blocks in brackets are options. Every block reads valid steps only, so padding never reaches the
logits. A new block is one module in this package plus one argument here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bigru_lightning.model import branch_worker
from bigru_lightning.model.conv import ConvBranch
from bigru_lightning.model.downsample import TimeDownsample
from bigru_lightning.model.pooling import POOLINGS, Pooling, make_pooling
from bigru_lightning.model.recurrent import StackedGRU, upgrade_packed_gru_keys
from bigru_lightning.model.rocket import NUM_KERNELS, RandomKernelBranch
from bigru_lightning.model.steps import full_lengths

DEFAULT_CONV_KERNELS = (8, 5, 3)


class BiGRU(nn.Module):
    """A (bi)directional GRU, a pooling over time and a linear head; optionally GRU-FCN and downsampling.

    Args:
        input_size: Number of features per time step.
        hidden_size: Hidden units per direction and layer.
        num_layers: Number of stacked GRU layers.
        num_classes: Number of output classes (logits per sequence).
        dropout: Dropout between GRU layers and before the head, in [0, 1).
        bidirectional: Run a backward direction as well as the forward one.
        pooling: How the per-step outputs become one vector per sequence:
            ``final_state`` (each direction's final hidden state, concatenated: the whole sequence
            summarised in each direction), ``last_step`` (the output at the last valid step, the
            tutorial's ``out[:, -1]``; its backward half has seen one element only), ``mean`` or
            ``max`` over the valid steps, ``attention`` (a learned softmax weighting of the valid steps).
        conv_channels: None (no conv branch) or the filters of each block of an FCN branch beside the
            GRU (GRU-FCN), e.g. ``[128, 256, 128]``; its average over valid steps joins the head's input.
        conv_kernels: Kernel width of each conv block, one per entry of ``conv_channels``.
        downsample: Average every ``downsample`` steps before the GRU (length ``L`` -> ``ceil(L / k)``);
            the conv branch keeps the full resolution. 1: no downsampling.
        rocket_features: 0 (no branch) or about how many random-kernel features (MiniRocket,
            Dempster et al. 2021) join the head's input, at least 84 (rounded down to a multiple of 84);
            the branch is not trained by gradient descent: :meth:`RandomKernelBranch.fit` sets it from
            training data once (the Lightning module does so at the start of fitting).
        rocket_max_dilation: Largest dilation of the random kernels (about (length - 1) / 8 covers a
            sequence of ``length`` steps).
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
        conv_channels: list[int] | None = None,
        conv_kernels: list[int] | tuple[int, ...] = DEFAULT_CONV_KERNELS,
        downsample: int = 1,
        rocket_features: int = 0,
        rocket_max_dilation: int = 32,
    ) -> None:
        super().__init__()
        _check_positive("input_size", input_size)
        _check_positive("hidden_size", hidden_size)
        _check_positive("num_layers", num_layers)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
        _check_positive("downsample", downsample)
        channels, kernels = _check_conv(conv_channels, conv_kernels)
        if (
            isinstance(rocket_features, bool)
            or not isinstance(rocket_features, int)
            or (rocket_features != 0 and rocket_features < NUM_KERNELS)
        ):
            raise ValueError(f"rocket_features must be 0 (off) or an integer >= {NUM_KERNELS}, got {rocket_features!r}")
        _check_positive("rocket_max_dilation", rocket_max_dilation)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_classes = num_classes
        self.bidirectional = bidirectional
        self.pooling: str = pooling
        self.num_directions = 2 if bidirectional else 1
        self.conv_channels = channels
        self.conv_kernels = kernels
        # Construction order = initialisation order: the GRU and the head draw the same initial weights
        # as the nn.GRU + Linear of earlier versions, so seeded runs of the default model are unchanged.
        self.downsample = TimeDownsample(downsample)
        self.rnn = StackedGRU(input_size, hidden_size, num_layers, bidirectional, float(dropout))
        self.pool = make_pooling(pooling, hidden_size, bidirectional)
        # An instance attribute (TorchScript reads those): full-length batches take the pooled vector
        # from the GRUs' final states.
        self.pool_reads_final_states: bool = self.pool.reads_final_states
        self.conv = None if channels is None else ConvBranch(input_size, channels, kernels)
        self.dropout = nn.Dropout(float(dropout))
        conv_size = 0 if channels is None else channels[-1]
        self.rocket = RandomKernelBranch(input_size, rocket_features, rocket_max_dilation) if rocket_features else None
        rocket_size = 0 if self.rocket is None else self.rocket.output_size
        self.head = nn.Linear(self.num_directions * hidden_size + conv_size + rocket_size, num_classes)
        self.register_load_state_dict_pre_hook(_upgrade_old_keys)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Return class logits of shape (batch, num_classes).

        Args:
            x: Sequences, shape (batch, time, features), padded at the end where lengths differ.
            lengths: Optional true length of each sequence, shape (batch,), each in [1, time].
        """
        conv_ticket = -1  # the FCN branch on a second CPU thread while the GRU runs here (training only)
        if self.conv is not None and not torch.jit.is_scripting() and branch_worker.applies(x):
            conv_ticket = branch_worker.start(self.conv, x, lengths)
        short, short_lengths = self.downsample(x, lengths)
        if self.pool_reads_final_states:
            summary = self.rnn.final_states(short, short_lengths)  # the pooled vector, from the GRUs' states
        else:
            out = self.rnn(short, short_lengths)
            summary = self.pool(out, full_lengths(out) if short_lengths is None else short_lengths)
        if self.conv is not None:
            if conv_ticket >= 0 and not torch.jit.is_scripting():
                conv_summary = branch_worker.finish(conv_ticket)
            else:
                conv_summary = self.conv(x, lengths)
            summary = torch.cat([summary, conv_summary], dim=1)
        if self.rocket is not None:
            summary = torch.cat([summary, self.rocket(x, lengths)], dim=1)
        return self.head(self.dropout(summary))


def upgrade_state_dict(state_dict: dict[str, Any], prefix: str = "") -> None:
    """Rename, in place, the weights of earlier layouts of a :class:`BiGRU` found at ``prefix`` to today's.

    Earlier versions held one ``nn.GRU`` (``gru.weight_ih_l0``, ``gru.weight_ih_l0_reverse``, ...); today
    each direction of each layer is its own GRU (``rnn.layers.0.forward_gru.weight_ih_l0``, ...). The
    parameters keep their order, so optimizer states saved beside them still match.
    """
    upgrade_packed_gru_keys(state_dict, prefix, old="gru", new="rnn")


def _upgrade_old_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: checkpoints of earlier layouts still load (see :func:`upgrade_state_dict`)."""
    upgrade_state_dict(state_dict, prefix)


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_conv(channels: list[int] | None, kernels: list[int] | tuple[int, ...]) -> tuple[list[int] | None, list[int]]:
    """Validate the conv branch's settings; return them as lists (channels None: no branch)."""
    if not isinstance(kernels, (list, tuple)) or not kernels or not all(_is_positive(k) for k in kernels):
        raise ValueError(f"conv_kernels must be a non-empty list of positive integers, got {kernels!r}")
    if channels is None:
        return None, list(kernels)
    if not isinstance(channels, (list, tuple)) or not channels or not all(_is_positive(c) for c in channels):
        raise ValueError(f"conv_channels must be null or a non-empty list of positive integers, got {channels!r}")
    if len(kernels) != len(channels):
        raise ValueError(
            f"conv_kernels must give one kernel per entry of conv_channels ({len(channels)}), got {list(kernels)!r}"
        )
    return list(channels), list(kernels)


def _is_positive(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1
