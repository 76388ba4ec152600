"""An export-friendly copy of a trained :class:`~bigru_lightning.module.BiGRUClassifier`.

``pack_padded_sequence`` cannot be exported (neither ONNX exporter nor a portable TorchScript graph
handles it), so :class:`ExportableClassifier` computes the same function without packing:

- every direction of every layer runs as its own unidirectional ``nn.GRU`` holding the trained
  weights (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` and their
  ``_reverse`` twins);
- the backward direction reads each sequence reversed *within its length* (a gather with the index
  ``lengths - 1 - t`` for ``t < lengths``, padding left in place), so it starts at the true end and
  never sees the padding; its outputs are put back in time order with the same index;
- the forward direction's outputs up to ``lengths - 1`` never depend on the padding that follows;
- every pooling reads valid steps only: ``final_state`` is the forward output at ``lengths - 1``
  and the backward output at step 0 of the last layer, ``last_step`` the output at ``lengths - 1``,
  ``mean`` and ``max`` are masked.

The module takes raw (unstandardised) inputs, standardises them with the trained ``feature_mean`` and
``feature_std`` and returns class probabilities, so the exported graph is the whole predictor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # Lightning is not needed to run or script this module
    from bigru_lightning.model import BiGRU
    from bigru_lightning.module import BiGRUClassifier


class ExportableClassifier(nn.Module):
    """Raw sequences (and optional lengths) in, class probabilities out; no packing inside.

    Args:
        classifier: The trained model; its weights, scaling buffers and settings are copied.
    """

    def __init__(self, classifier: BiGRUClassifier) -> None:
        super().__init__()
        net: BiGRU = classifier.net
        self.pooling: str = net.pooling
        self.bidirectional: bool = net.bidirectional
        self.hidden_size: int = net.hidden_size
        self.input_size: int = net.input_size
        self.num_classes: int = net.num_classes
        self.label_names: list[str] = [str(name) for name in classifier.label_names]
        self.register_buffer("feature_mean", classifier.feature_mean.detach().clone().float())
        self.register_buffer("feature_std", classifier.feature_std.detach().clone().float())
        self.feature_mean: torch.Tensor
        self.feature_std: torch.Tensor
        self.layers = nn.ModuleList(
            (_BidirectionalLayer if net.bidirectional else _ForwardLayer)(net.gru, layer)
            for layer in range(net.num_layers)
        )
        self.head = nn.Linear(net.head.in_features, net.head.out_features)
        self.head.load_state_dict(net.head.state_dict())
        self.requires_grad_(False)  # inference only: no autograd graph in the exported model
        self.eval()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Class probabilities, shape (batch, num_classes), after checking the shapes and lengths.

        Args:
            x: Raw sequences, float32, shape (batch, time, features), padded at the end.
            lengths: True length of each sequence, int64, shape (batch,), each in [1, time];
                None means every sequence fills all ``time`` steps.
        """
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"x must have shape (batch, time, {self.input_size}); got {list(x.shape)}")
        if lengths is not None:
            if lengths.dim() != 1 or lengths.shape[0] != x.shape[0]:
                raise ValueError(f"lengths must have shape ({x.shape[0]},); got {list(lengths.shape)}")
            if bool((lengths < 1).any()) or bool((lengths > x.shape[1]).any()):
                raise ValueError(f"lengths must be in [1, {x.shape[1]}] (the time axis of x)")
        return self.probabilities(x, lengths)

    def probabilities(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`forward` without the checks (data-dependent checks cannot be exported to ONNX)."""
        batch, time = x.shape[0], x.shape[1]
        steps = torch.arange(time, device=x.device).unsqueeze(0)  # (1, time)
        if lengths is None:
            lengths = torch.full((batch,), time, dtype=torch.int64, device=x.device)
        lengths = lengths.to(torch.int64)
        valid = steps < lengths.unsqueeze(1)  # (batch, time)
        # Reversal within each length: t -> lengths-1-t on valid steps, padding stays put.
        reverse_index = torch.where(valid, lengths.unsqueeze(1) - 1 - steps, steps)
        last_index = lengths - 1

        out = (x - self.feature_mean) / self.feature_std
        forward_out = out
        backward_out = out
        for layer in self.layers:
            out, forward_out, backward_out = layer(out, reverse_index)
        summary = self._pool(out, forward_out, backward_out, valid, lengths, last_index)
        return self.head(summary).softmax(dim=-1)

    def _pool(
        self,
        out: torch.Tensor,
        forward_out: torch.Tensor,
        backward_out: torch.Tensor,
        valid: torch.Tensor,
        lengths: torch.Tensor,
        last_index: torch.Tensor,
    ) -> torch.Tensor:
        if self.pooling == "final_state":
            forward_final = _step_at(forward_out, last_index)
            if not self.bidirectional:
                return forward_final
            return torch.cat([forward_final, backward_out[:, 0]], dim=1)
        if self.pooling == "last_step":
            return _step_at(out, last_index)
        mask = valid.unsqueeze(2)
        if self.pooling == "mean":
            total = (out * mask.to(out.dtype)).sum(dim=1)
            return total / lengths.to(out.dtype).unsqueeze(1)
        return out.masked_fill(~mask, float("-inf")).amax(dim=1)


class _ForwardLayer(nn.Module):
    """One layer of a unidirectional GRU."""

    def __init__(self, gru: nn.GRU, layer: int) -> None:
        super().__init__()
        self.forward_gru = _direction_of(gru, layer, "")

    def forward(self, x: torch.Tensor, reverse_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (outputs, forward outputs, forward outputs): the same signature as :class:`_BidirectionalLayer`."""
        forward_out, _ = self.forward_gru(x)
        return forward_out, forward_out, forward_out


class _BidirectionalLayer(nn.Module):
    """One layer of a bidirectional GRU as two unidirectional GRUs, the backward one fed reversed sequences."""

    def __init__(self, gru: nn.GRU, layer: int) -> None:
        super().__init__()
        self.forward_gru = _direction_of(gru, layer, "")
        self.backward_gru = _direction_of(gru, layer, "_reverse")

    def forward(self, x: torch.Tensor, reverse_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (both directions' outputs concatenated, forward outputs, backward outputs) in time order."""
        forward_out, _ = self.forward_gru(x)
        reversed_out, _ = self.backward_gru(_gather_steps(x, reverse_index))
        backward_out = _gather_steps(reversed_out, reverse_index)
        return torch.cat([forward_out, backward_out], dim=2), forward_out, backward_out


def _direction_of(gru: nn.GRU, layer: int, suffix: str) -> nn.GRU:
    """A one-layer unidirectional GRU holding ``gru``'s weights of ``layer``, direction ``suffix``."""
    weight_ih = getattr(gru, f"weight_ih_l{layer}{suffix}")
    single = nn.GRU(
        input_size=weight_ih.shape[1], hidden_size=gru.hidden_size, num_layers=1, batch_first=True, bias=gru.bias
    )
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if gru.bias else [])
    single.load_state_dict({f"{name}_l0": getattr(gru, f"{name}_l{layer}{suffix}").detach() for name in names})
    return single


def _gather_steps(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[b, index[b, t]]`` for every batch row b and step t."""
    return torch.gather(values, 1, index.unsqueeze(2).expand(-1, -1, values.shape[2]))


def _step_at(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[b, index[b]]``: one step per batch row, shape (batch, channels)."""
    return _gather_steps(values, index.unsqueeze(1)).squeeze(1)


class FixedLengthGraph(nn.Module):
    """What the one-input ONNX graph computes: ``x`` only, every sequence fills all time steps.

    Args:
        model: The exportable classifier to wrap.
    """

    def __init__(self, model: ExportableClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities for full-length raw sequences ``x`` (batch, time, features)."""
        return self.model.probabilities(x)


class PaddedGraph(nn.Module):
    """What the two-input ONNX graph computes: padded ``x`` and its ``lengths``.

    Args:
        model: The exportable classifier to wrap.
    """

    def __init__(self, model: ExportableClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Probabilities for padded raw sequences ``x`` (batch, time, features) of the given ``lengths``."""
        return self.model.probabilities(x, lengths)
