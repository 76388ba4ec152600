"""A one-layer GRU's training pass on the CPU with a hand-written backward: every direction in one loop.

``nn.GRU``'s CPU forward runs in C++, but autograd records a dozen small operations per time step and
its backward replays them one by one (about 60 operations per step and direction): on the small
batches of the recipe, op overhead, not arithmetic, sets the GRU's cost. :class:`GRUScan` computes the
same recurrence with the directions of a layer stacked in one batched loop, saves the gates, and
differentiates it by hand: four operations per time step backward (two for the recurrence, one matrix
product, the gradient of the gates), the weights' gradients in one matrix product after the loop.

It computes what ``nn.GRU`` computes (gates ``r, z, n`` in torch's order, ``n = tanh(W_in x + b_in +
r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``), to rounding: ``tests/test_model.py`` checks the
outputs and every gradient against ``nn.GRU``. The GRU modules keep their parameters (names,
initialisation, checkpoints, export); this is only another way to run them, used where it pays:
training on the CPU (:func:`scan_applies`). Measured with ``benchmarks/gru_scan_speed.py``
(``docs/benchmarks.md``, "The GRU on the CPU": a training step 0.53-0.63 of its time with ``nn.GRU``).
"""

# No ``from __future__ import annotations`` here: TorchScript reads the signatures of the
# ``@torch.jit.unused`` functions below (when it compiles the GRU layer that calls them) and cannot
# resolve them as strings.
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import nn

from bigru_lightning.model.steps import gather_steps, reversal_index


@torch.jit.unused
def scan_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a GRU with recurrent ``weight`` should run on ``x`` through the scan: CPU training, float, no autocast.

    Inference (no gradient), GPUs (cuDNN's fused GRU), autocast, tracing and exporting keep ``nn.GRU``.
    """
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and torch.is_grad_enabled()
        and weight.requires_grad
        and not torch.is_autocast_enabled("cpu")
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


@torch.jit.unused
def layer_outputs(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    reverse_index: Optional[torch.Tensor],  # noqa: UP045 (TorchScript reads this signature)
) -> torch.Tensor:
    """A bidirectional (or forward-only) GRU layer's outputs (batch, time, directions * hidden), by the scan.

    In time order, forward half first, as :class:`~bigru_lightning.model.recurrent.GRULayer` returns them.
    ``weights``: :func:`gru_weights` of the forward GRU, then (if any) of the backward one.
    ``reverse_index``: each sequence's reversal within its length, or None when all fill every step.
    """
    states = _layer_states(x, weights, reverse_index)
    if states.shape[0] == 1:
        return states[0]
    backward = states[1].flip(1) if reverse_index is None else gather_steps(states[1], reverse_index)
    return torch.cat([states[0], backward], dim=2)


@torch.jit.unused
def layer_final_states(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    lengths: Optional[torch.Tensor],  # noqa: UP045 (TorchScript reads this signature)
) -> torch.Tensor:
    """Each direction's state after the last valid step (batch, directions * hidden), by the scan.

    ``lengths``: valid steps per sequence, or None when all fill every step. Each direction's state is
    read where it finished its sequence (step ``lengths - 1`` in its reading order), not at the padded
    end: what :class:`~bigru_lightning.model.pooling.FinalState` reads from :func:`layer_outputs`, without
    reordering the backward direction's outputs into time order first.
    """
    reverse_index = None if lengths is None else reversal_index(lengths, x.shape[1])
    states = _layer_states(x, weights, reverse_index)  # (directions, batch, time, hidden)
    if lengths is None:
        last = states[:, :, -1]
    else:
        rows = torch.arange(x.shape[0], device=x.device)
        last = states[:, rows, lengths.to(device=x.device, dtype=torch.int64) - 1]  # (directions, batch, hidden)
    return torch.cat(list(last.unbind(0)), dim=1)


def gru_weights(gru: nn.GRU) -> list[torch.Tensor]:
    """A one-layer ``nn.GRU``'s ``[weight_ih, weight_hh, bias_ih, bias_hh]``."""
    # torch types module attributes as Tensor | Module; TorchScript compiles this (no typing.cast; its
    # ignore comments end the line).
    return [gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0]  # type: ignore[list-item]


def _layer_states(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    reverse_index: Optional[torch.Tensor],  # noqa: UP045
) -> torch.Tensor:
    """Every direction's states (directions, batch, time, hidden), each in the order it read the steps."""
    inputs = [x]
    if len(weights) > 4:
        inputs.append(x.flip(1) if reverse_index is None else gather_steps(x, reverse_index))
    return run_directions(torch.stack(inputs), weights)


def run_directions(inputs: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Hidden states of one-layer GRUs, each reading its own sequence: ``(directions, batch, time, hidden)``.

    Args:
        inputs: ``(directions, batch, time, features)``: direction ``d``'s input sequences, in the order
            its GRU reads them (a backward GRU's already reversed).
        weights: :func:`gru_weights` of each direction's GRU, one after the other.
    """
    directions, batch, time, features = inputs.shape
    # [W_ih^T ; b_ih] and [W_hh^T ; b_hh]: each bias is the last row, multiplied by a column of ones.
    w_ih = torch.stack(
        [torch.cat([w.t(), b.unsqueeze(0)], dim=0) for w, b in zip(weights[0::4], weights[2::4], strict=True)]
    )  # (D, F + 1, 3H)
    w_hh = torch.stack(
        [torch.cat([w.t(), b.unsqueeze(0)], dim=0) for w, b in zip(weights[1::4], weights[3::4], strict=True)]
    )  # (D, H + 1, 3H)
    # Time-major within each direction before the projection (the inputs are narrow: a cheap copy), so that
    # every step's projection, and its gradient, is a (D, B, 3H) slice of one tensor without reordering.
    flat = torch.cat([inputs.transpose(1, 2), inputs.new_ones(directions, time, batch, 1)], dim=3)
    gi = torch.bmm(flat.view(directions, time * batch, features + 1), w_ih)  # (D, T*B, 3H): every step's projection
    states = GRUScan.apply(gi.view(directions, time, batch, -1), w_hh)  # (D, T, B, H)
    return states.transpose(1, 2)


class GRUScan(torch.autograd.Function):
    """The GRU recurrence over precomputed input projections, all directions at once, with its backward.

    Layout ``(directions, time, batch, channels)``: each step's matrix products take the states as rows
    (a few rows by ``H + 1`` against ``H + 1`` by ``3H`` runs several times faster on the CPU than the
    transposed product), the gates are column blocks of each row, and the weights' gradient after the
    loop is one product of the saved states and the gates' gradients, read in place. The per-step
    gradient of the state runs time-major (``(time, directions, batch, hidden)``), written in place.

    ``forward(gi, w_hh)``: ``gi`` (D, T, B, 3H) input projections including ``b_ih``; ``w_hh``
    (D, H + 1, 3H) the transposed recurrent weights with ``b_hh`` as the last row. Returns the hidden
    states after each step, (D, T, B, H), starting from zeros.
    """

    @staticmethod
    def forward(ctx: Any, gi: torch.Tensor, w_hh: torch.Tensor) -> torch.Tensor:  # noqa: D102
        directions, time, batch, gate_rows = gi.shape
        hidden = gate_rows // 3
        # states[:, t] = the state before step t, beside a column of ones (the bias row's input).
        states = gi.new_empty(directions, time + 1, batch, hidden + 1)
        states[..., hidden] = 1
        states[:, 0, :, :hidden] = 0
        gates = gi.new_empty(time, directions, batch, gate_rows)  # r, z, n after their nonlinearities
        recurrent = torch.empty_like(gates)  # W_hh h + b_hh, each step
        # Every step's views made once (unbind): slicing inside the loop costs as much as the arithmetic.
        state_rows, state_h = states.unbind(1), states[..., :hidden].unbind(1)
        in_rz, in_n = gi[..., : 2 * hidden].unbind(1), gi[..., 2 * hidden :].unbind(1)
        rec_all, rec_rz, rec_n = (
            recurrent.unbind(0),
            recurrent[..., : 2 * hidden].unbind(0),
            recurrent[..., 2 * hidden :].unbind(0),
        )
        gate_rz, gate_r, gate_z, gate_n = (
            gates[..., : 2 * hidden].unbind(0),
            gates[..., :hidden].unbind(0),
            gates[..., hidden : 2 * hidden].unbind(0),
            gates[..., 2 * hidden :].unbind(0),
        )
        for t in range(time):
            torch.bmm(state_rows[t], w_hh, out=rec_all[t])
            torch.add(in_rz[t], rec_rz[t], out=gate_rz[t]).sigmoid_()
            n = torch.addcmul(in_n[t], gate_r[t], rec_n[t], out=gate_n[t]).tanh_()
            torch.lerp(n, state_h[t], gate_z[t], out=state_h[t + 1])  # n + z * (h - n)
        ctx.save_for_backward(w_hh, states, gates, recurrent)
        return states[:, 1:, :, :hidden]

    @staticmethod
    def backward(ctx: Any, grad_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        w_hh, states, gates, recurrent = ctx.saved_tensors
        time, directions, batch, gate_rows = gates.shape
        hidden = gate_rows // 3
        r, z, n = gates[..., :hidden], gates[..., hidden : 2 * hidden], gates[..., 2 * hidden :]
        previous = states[:, :-1, :, :hidden].transpose(0, 1)  # (T, D, B, H)
        # What each gate's pre-activation gradient is per unit of the state's gradient, every step at once.
        to_n = (1 - z) * (1 - n * n)
        per_state = torch.empty_like(gates)  # written in place, block by block (a cat would copy them again)
        torch.mul(to_n * recurrent[..., 2 * hidden :], r * (1 - r), out=per_state[..., :hidden])
        torch.mul((previous - n) * z, 1 - z, out=per_state[..., hidden : 2 * hidden])
        torch.mul(to_n, r, out=per_state[..., 2 * hidden :])
        per_state_steps = per_state.view(time, directions, batch, 3, hidden).unbind(0)
        keep = z.contiguous().unbind(0)
        # d loss / d (W_hh h + b_hh), each step: direction-major, as the weights' gradient reads it.
        grad_recurrent = gates.new_empty(directions, time, batch, gate_rows)
        grad_recurrent_steps = grad_recurrent.unbind(1)
        # grad_state[t] = incoming[t] + z[t+1] * grad_state[t+1] + grad_recurrent[t+1] @ W_hh (none after the last).
        grad_state_all = grad_states.transpose(0, 1).contiguous()  # (T, D, B, H)
        grad_state_steps = grad_state_all.unbind(0)
        w_back = w_hh[:, :hidden].transpose(1, 2).contiguous()  # (D, 3H, H)
        for t in range(time - 1, -1, -1):
            grad_state = grad_state_steps[t]
            torch.mul(
                per_state_steps[t],
                grad_state.unsqueeze(2),
                out=grad_recurrent_steps[t].view(directions, batch, 3, hidden),
            )
            if t > 0:
                grad_state_steps[t - 1].addcmul_(keep[t], grad_state).baddbmm_(grad_recurrent_steps[t], w_back)
        # The input projection's gradient: r and z as the recurrent one; n before the r product.
        grad_gi = torch.cat([grad_recurrent[..., : 2 * hidden], (grad_state_all * to_n).transpose(0, 1)], dim=3)
        grad_w = torch.bmm(
            states[:, :-1].reshape(directions, time * batch, hidden + 1).transpose(1, 2),
            grad_recurrent.view(directions, time * batch, gate_rows),
        )
        return grad_gi, grad_w
