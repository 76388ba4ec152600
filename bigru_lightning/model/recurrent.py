"""The recurrent core: a stacked (bi)directional GRU that never lets padding reach a valid step.

Each direction of each layer is its own one-layer unidirectional ``nn.GRU``:

- the forward GRU reads the padded batch as it is; its output at a valid step depends only on the
  steps before it, never on the padding that follows;
- the backward GRU reads each sequence reversed *within its length* (a gather with the index
  ``lengths - 1 - t``; padding stays at the end), so it starts at the true last step; its outputs are
  put back in time order with the same index. Without lengths it reads ``x.flip(1)`` (the fast path).

This computes exactly what ``nn.GRU(bidirectional=True)`` on a ``pack_padded_sequence`` computes, with
ordinary tensor operations only, so the same module trains and exports (ONNX, TorchScript); on CPU its
backward pass is also faster than the packed one (see ``docs/models.md``). Training on the CPU runs
a layer's directions together through :mod:`~bigru_lightning.model.gru_scan` (the same recurrence with
a hand-written backward, several times cheaper there); elsewhere each ``nn.GRU`` runs itself.

Outputs at padded steps are undefined (they may depend on the padding); the blocks after the GRU read
valid steps only.
"""

from __future__ import annotations

import torch
from torch import nn

from bigru_lightning.model.gru_scan import gru_weights, layer_final_states, layer_outputs, scan_applies
from bigru_lightning.model.steps import gather_steps, reversal_index, step_at


class GRULayer(nn.Module):
    """One layer: a forward GRU and, if bidirectional, a backward GRU fed reversed sequences.

    Args:
        input_size: Features per step entering the layer.
        hidden_size: Hidden units per direction.
        bidirectional: Also run the backward direction.
    """

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool) -> None:
        super().__init__()
        self.forward_gru = nn.GRU(input_size, hidden_size, batch_first=True)
        self.backward_gru = nn.GRU(input_size, hidden_size, batch_first=True) if bidirectional else None

    def forward(self, x: torch.Tensor, reverse_index: torch.Tensor | None) -> torch.Tensor:
        """Outputs (batch, time, directions * hidden) in time order, forward half first.

        Args:
            x: Inputs (batch, time, input_size), padded at the end.
            reverse_index: :func:`~bigru_lightning.model.steps.reversal_index` of the lengths, or None
                when every sequence fills all steps.
        """
        if not torch.jit.is_scripting() and scan_applies(x, self._recurrent_weight()):
            return layer_outputs(x, self._weights(), reverse_index)
        forward_out, _ = self.forward_gru(x)
        if self.backward_gru is None:
            return forward_out
        if reverse_index is None:
            backward_out, _ = self.backward_gru(x.flip(1))
            backward_out = backward_out.flip(1)
        else:
            reversed_out, _ = self.backward_gru(gather_steps(x, reverse_index))
            backward_out = gather_steps(reversed_out, reverse_index)
        return torch.cat([forward_out, backward_out], dim=2)

    def final_states(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Each direction's hidden state after its last valid step (batch, directions * hidden).

        The forward GRU's state after step ``lengths - 1`` and the backward GRU's after reading back to
        step 0: what :class:`~bigru_lightning.model.pooling.FinalState` reads from :meth:`forward`'s
        outputs, taken from the GRUs' states instead. Training is faster this way: autograd skips the
        per-step outputs, and with lengths the backward direction's outputs are not put back into time
        order (measured in ``docs/profiling.md``).

        Args:
            x: Inputs (batch, time, input_size), padded at the end.
            lengths: Valid steps per sequence (batch,); None: all steps are valid.
        """
        if not torch.jit.is_scripting() and scan_applies(x, self._recurrent_weight()):
            return layer_final_states(x, self._weights(), lengths)
        if lengths is None:
            _, forward_state = self.forward_gru(x)
            if self.backward_gru is None:
                return forward_state[0]
            _, backward_state = self.backward_gru(x.flip(1))
            return torch.cat([forward_state[0], backward_state[0]], dim=1)
        last = lengths - 1
        forward_out, _ = self.forward_gru(x)
        if self.backward_gru is None:
            return step_at(forward_out, last)
        reversed_out, _ = self.backward_gru(gather_steps(x, reversal_index(lengths, x.shape[1])))
        return torch.cat([step_at(forward_out, last), step_at(reversed_out, last)], dim=1)

    def _recurrent_weight(self) -> torch.Tensor:
        """The forward GRU's ``weight_hh_l0`` (whether it trains decides the scan)."""
        # TorchScript compiles this (no typing.cast; its ignore comments end the line).
        return self.forward_gru.weight_hh_l0  # type: ignore[return-value]

    def _weights(self) -> list[torch.Tensor]:
        """Both directions' weights for the scan (CPU training; see :mod:`~bigru_lightning.model.gru_scan`)."""
        weights = gru_weights(self.forward_gru)
        if self.backward_gru is not None:
            weights += gru_weights(self.backward_gru)
        return weights


class StackedGRU(nn.Module):
    """``num_layers`` :class:`GRULayer` s with dropout between them (as ``nn.GRU(dropout=...)``).

    Parameters are created in ``nn.GRU``'s order (layer by layer, forward then backward, each
    ``weight_ih, weight_hh, bias_ih, bias_hh``) with its initialisation, so a seed gives the same
    initial weights as ``nn.GRU`` did.

    Args:
        input_size: Features per step.
        hidden_size: Hidden units per direction and layer.
        num_layers: Stacked layers.
        bidirectional: Run a backward direction in every layer.
        dropout: Dropout on each layer's outputs except the last, in [0, 1).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool, dropout: float) -> None:
        super().__init__()
        directions = 2 if bidirectional else 1
        self.layers = nn.ModuleList(
            GRULayer(input_size if layer == 0 else directions * hidden_size, hidden_size, bidirectional)
            for layer in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout if num_layers > 1 else 0.0)
        self.output_size = directions * hidden_size

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Last layer's outputs (batch, time, directions * hidden); valid steps never see padding.

        Args:
            x: Inputs (batch, time, features), padded at the end.
            lengths: Valid steps per sequence (batch,), each in [1, time]; None: all steps are valid.
        """
        reverse_index = None if lengths is None else reversal_index(lengths, x.shape[1])
        return self._through_layers(x, reverse_index, lengths, final_states=False)

    def final_states(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The last layer's hidden state of each direction after its last valid step (batch, directions * hidden).

        Equal to ``FinalState`` over :meth:`forward`'s outputs, and cheaper to train (see
        :meth:`GRULayer.final_states`).

        Args:
            x: Inputs (batch, time, features), padded at the end.
            lengths: Valid steps per sequence (batch,), each in [1, time]; None: all steps are valid.
        """
        reverse_index = None if lengths is None else reversal_index(lengths, x.shape[1])
        return self._through_layers(x, reverse_index, lengths, final_states=True)

    def _through_layers(
        self, x: torch.Tensor, reverse_index: torch.Tensor | None, lengths: torch.Tensor | None, final_states: bool
    ) -> torch.Tensor:
        """The layers in turn with dropout between them; the last gives its outputs or its final states."""
        out = x
        last = len(self.layers) - 1
        for number, layer in enumerate(self.layers):
            if number > 0:
                out = self.dropout(out)
            if final_states and number == last:
                # Each layer is a GRULayer; TorchScript cannot compile typing.cast, hence the ignore.
                return layer.final_states(out, lengths)  # type: ignore[operator]
            out = layer(out, reverse_index)
        return out


def upgrade_packed_gru_keys(state_dict: dict[str, torch.Tensor], prefix: str, old: str, new: str) -> None:
    """Rename, in place, the keys of a former ``nn.GRU`` at ``prefix + old`` to this stack's at ``prefix + new``.

    ``{old}.weight_ih_l1_reverse`` becomes ``{new}.layers.1.backward_gru.weight_ih_l0``, and so on for
    ``weight_hh``, ``bias_ih`` and ``bias_hh``: checkpoints written before the stack existed still load.
    """
    start = f"{prefix}{old}."
    for key in [key for key in state_dict if key.startswith(start)]:
        name = key[len(start) :]  # e.g. weight_ih_l0_reverse
        backward = name.endswith("_reverse")
        base, _, layer = name.removesuffix("_reverse").rpartition("_l")
        if not base or not layer.isdigit():
            continue
        direction = "backward_gru" if backward else "forward_gru"
        state_dict[f"{prefix}{new}.layers.{layer}.{direction}.{base}_l0"] = state_dict.pop(key)
