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
    hidden = w_ih.shape[1] // 3
    # [W_hh | b_hh]: the bias is the last column, multiplied by a row of ones kept under each state.
    w_hh = torch.stack(
        [torch.cat([w, b.unsqueeze(1)], dim=1) for w, b in zip(weights[1::4], weights[3::4], strict=True)]
    )
    flat = inputs.reshape(directions, batch * time, features).transpose(1, 2)  # (D, F, B*T)
    gi = torch.baddbmm(b_ih.unsqueeze(2), w_ih, flat)  # (D, 3H, B*T): every step's input projection at once
    gi = gi.view(directions, 3 * hidden, batch, time).permute(3, 0, 1, 2).contiguous()  # (T, D, 3H, B)
    states = GRUScan.apply(gi, w_hh)  # (T, D, H, B)
    return states.permute(1, 3, 0, 2)


class GRUScan(torch.autograd.Function):
    """The GRU recurrence over precomputed input projections, all directions at once, with its backward.

    Layout ``(time, directions, channels, batch)``: each step's gates are contiguous blocks, so the
    element-wise operations run on whole rows.

    ``forward(gi, w_hh)``: ``gi`` (T, D, 3H, B) input projections including ``b_ih``; ``w_hh``
    (D, 3H, H + 1) the recurrent weights with ``b_hh`` as the last column. Returns the hidden states
    after each step, (T, D, H, B), starting from zeros.
    """

    @staticmethod
    def forward(ctx: Any, gi: torch.Tensor, w_hh: torch.Tensor) -> torch.Tensor:  # noqa: D102
        time, directions, gate_rows, batch = gi.shape
        hidden = gate_rows // 3
        # states[t] = the state before step t, over a row of ones (the bias column's input).
        states = gi.new_empty(time + 1, directions, hidden + 1, batch)
        states[:, :, hidden] = 1
        states[0, :, :hidden] = 0
        gates = torch.empty_like(gi)  # r, z, n after their nonlinearities
        recurrent = torch.empty_like(gi)  # W_hh h + b_hh, each step
        for t in range(time):
            state = states[t]
            gh = torch.bmm(w_hh, state, out=recurrent[t])
            step_in, step_gates = gi[t], gates[t]
            rz = torch.add(step_in[:, : 2 * hidden], gh[:, : 2 * hidden], out=step_gates[:, : 2 * hidden]).sigmoid_()
            n = step_gates[:, 2 * hidden :]
            torch.addcmul(step_in[:, 2 * hidden :], rz[:, :hidden], gh[:, 2 * hidden :], out=n).tanh_()
            torch.addcmul(n, rz[:, hidden:], state[:, :hidden] - n, out=states[t + 1, :, :hidden])
        ctx.save_for_backward(w_hh, states, gates, recurrent)
        return states[1:, :, :hidden]

    @staticmethod
    def backward(ctx: Any, grad_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        w_hh, states, gates, recurrent = ctx.saved_tensors
        time, directions, gate_rows, batch = gates.shape
        hidden = gate_rows // 3
        r, z, n = gates[:, :, :hidden], gates[:, :, hidden : 2 * hidden], gates[:, :, 2 * hidden :]
        previous = states[:-1, :, :hidden]
        # What each gate's pre-activation gradient is per unit of the state's gradient, every step at once.
        to_n = (1 - z) * (1 - n * n)
        to_r = to_n * recurrent[:, :, 2 * hidden :] * r * (1 - r)
        per_state = torch.cat([to_r, (previous - n) * z * (1 - z), to_n * r], dim=2)
        keep = z.contiguous()
        grad_recurrent = torch.empty_like(per_state)  # d loss / d (W_hh h + b_hh), each step
        grad_state_all = per_state.new_empty(time, directions, hidden, batch)
        carry = per_state.new_zeros(directions, hidden, batch)
        w_back = w_hh[:, :, :hidden].transpose(1, 2)
        grad_states = grad_states.contiguous()
        for t in range(time - 1, -1, -1):
            grad_state = torch.add(grad_states[t], carry, out=grad_state_all[t])
            torch.mul(
                per_state[t].view(directions, 3, hidden, batch),
                grad_state.unsqueeze(1),
                out=grad_recurrent[t].view(directions, 3, hidden, batch),
            )
            carry = torch.baddbmm(grad_state * keep[t], w_back, grad_recurrent[t])
        # The input projection's gradient: r and z as the recurrent one; n before the r product.
        grad_gi = torch.cat([grad_recurrent[:, :, : 2 * hidden], grad_state_all * to_n], dim=2)
        grad_w = torch.bmm(
            grad_recurrent.permute(1, 2, 0, 3).reshape(directions, gate_rows, time * batch),
            states[:-1].permute(1, 0, 3, 2).reshape(directions, time * batch, hidden + 1),
        )
        return grad_gi, grad_w
