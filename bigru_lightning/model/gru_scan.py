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

from bigru_lightning.model.steps import gather_steps


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
def layer_final_states(x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """Each direction's state after its last step (batch, directions * hidden), for full-length ``x``, by the scan."""
    last = _layer_states(x, weights, None)[:, :, -1]  # (directions, batch, hidden)
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
    w_ih = torch.stack(list(weights[0::4]))  # (D, 3H, F)
    b_ih = torch.stack(list(weights[2::4]))  # (D, 3H)
    # [W_hh^T ; b_hh]: the bias is the last row, multiplied by a column of ones kept beside each state.
    w_hh = torch.stack(
        [torch.cat([w.t(), b.unsqueeze(0)], dim=0) for w, b in zip(weights[1::4], weights[3::4], strict=True)]
    )  # (D, H + 1, 3H)
    flat = inputs.reshape(directions, batch * time, features)
    gi = torch.baddbmm(b_ih.unsqueeze(1), flat, w_ih.transpose(1, 2))  # (D, B*T, 3H): every step's input projection
    gi = gi.view(directions, batch, time, -1).transpose(0, 2).transpose(1, 2).contiguous()  # (T, D, B, 3H)
    states = GRUScan.apply(gi, w_hh)  # (T, D, B, H)
    return states.permute(1, 2, 0, 3)


class GRUScan(torch.autograd.Function):
    """The GRU recurrence over precomputed input projections, all directions at once, with its backward.

    Layout ``(time, directions, batch, channels)``: each step's matrix products take the states as rows
    (a few rows by ``H + 1`` against ``H + 1`` by ``3H`` runs several times faster on the CPU than the
    transposed product), and the gates are column blocks of each row.

    ``forward(gi, w_hh)``: ``gi`` (T, D, B, 3H) input projections including ``b_ih``; ``w_hh``
    (D, H + 1, 3H) the transposed recurrent weights with ``b_hh`` as the last row. Returns the hidden
    states after each step, (T, D, B, H), starting from zeros.
    """

    @staticmethod
    def forward(ctx: Any, gi: torch.Tensor, w_hh: torch.Tensor) -> torch.Tensor:  # noqa: D102
        time, directions, batch, gate_rows = gi.shape
        hidden = gate_rows // 3
        # states[t] = the state before step t, beside a column of ones (the bias row's input).
        states = gi.new_empty(time + 1, directions, batch, hidden + 1)
        states[..., hidden] = 1
        states[0, ..., :hidden] = 0
        gates = torch.empty_like(gi)  # r, z, n after their nonlinearities
        recurrent = torch.empty_like(gi)  # W_hh h + b_hh, each step
        # Every step's views made once (unbind): slicing inside the loop costs as much as the arithmetic.
        state_rows, state_h = states.unbind(0), states[..., :hidden].unbind(0)
        in_rz, in_n = gi[..., : 2 * hidden].unbind(0), gi[..., 2 * hidden :].unbind(0)
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
        return states[1:, ..., :hidden]

    @staticmethod
    def backward(ctx: Any, grad_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        w_hh, states, gates, recurrent = ctx.saved_tensors
        time, directions, batch, gate_rows = gates.shape
        hidden = gate_rows // 3
        r, z, n = gates[..., :hidden], gates[..., hidden : 2 * hidden], gates[..., 2 * hidden :]
        previous = states[:-1, ..., :hidden]
        # What each gate's pre-activation gradient is per unit of the state's gradient, every step at once.
        to_n = (1 - z) * (1 - n * n)
        to_r = to_n * recurrent[..., 2 * hidden :] * r * (1 - r)
        per_state = torch.cat([to_r, (previous - n) * z * (1 - z), to_n * r], dim=3)
        per_state_steps = per_state.view(time, directions, batch, 3, hidden).unbind(0)
        keep = z.contiguous().unbind(0)
        grad_recurrent = torch.empty_like(per_state)  # d loss / d (W_hh h + b_hh), each step
        grad_recurrent_steps = grad_recurrent.unbind(0)
        # grad_state[t] = incoming[t] + z[t+1] * grad_state[t+1] + grad_recurrent[t+1] @ W_hh (none after the last).
        grad_state_all = grad_states.clone(memory_format=torch.contiguous_format)
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
        grad_gi = torch.cat([grad_recurrent[..., : 2 * hidden], grad_state_all * to_n], dim=3)
        grad_w = torch.bmm(
            states[:-1].permute(1, 3, 0, 2).reshape(directions, hidden + 1, time * batch),
            grad_recurrent.transpose(0, 1).reshape(directions, time * batch, gate_rows),
        )
        return grad_gi, grad_w
