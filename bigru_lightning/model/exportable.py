"""The whole predictor as one exportable module: standardise, the trained network, softmax.

:class:`ExportableClassifier` runs a copy of the trained :class:`~bigru_lightning.model.BiGRU` itself
(no second implementation): the network never packs sequences, so it exports to ONNX and TorchScript
as it is. It takes raw (unstandardised) inputs and returns class probabilities. It is built from the
network and the facts kept beside it (input scaling, label names), not from the LightningModule:
this package needs torch only (``bigru_lightning.export.exportable_model`` builds it from a checkpoint).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from bigru_lightning.model.network import BiGRU
from bigru_lightning.model.steps import full_lengths


class ExportableClassifier(nn.Module):
    """Raw sequences (and optional lengths) in, class probabilities out.

    Args:
        net: The trained network (copied).
        feature_mean: Per-feature mean of the training data, shape (input_size,): inputs are
            standardised as ``(x - feature_mean) / feature_std`` before the network.
        feature_std: Per-feature standard deviation of the training data, shape (input_size,).
        label_names: The class labels, in the order of the network's outputs.
    """

    def __init__(
        self, net: BiGRU, feature_mean: torch.Tensor, feature_std: torch.Tensor, label_names: Sequence[object]
    ) -> None:
        super().__init__()
        self.net = copy.deepcopy(net)
        self.input_size: int = net.input_size
        self.num_classes: int = net.num_classes
        self.label_names: list[str] = [str(name) for name in label_names]
        self.register_buffer("feature_mean", feature_mean.detach().clone().float())
        self.register_buffer("feature_std", feature_std.detach().clone().float())
        self.feature_mean: torch.Tensor
        self.feature_std: torch.Tensor
        self.requires_grad_(False)  # inference only: no autograd graph in the exported model
        self.eval()

    def train(self, mode: bool = True) -> ExportableClassifier:
        """Stay in eval mode whatever is asked (dropout and batch norm must not train in an export).

        Exporters switch modes around their capture and may restore training mode on a wrapper.
        """
        return super().train(False)

    def dynamo_onnx_blocker(self) -> str | None:
        """Why ``torch.onnx.export(dynamo=True)`` cannot export this model, or None when it can."""
        if self.net.downsample.factor > 1:  # torch 2.13: aten.gru on a derived time axis fails to decompose
            return "model.downsample > 1 is not supported by torch's dynamo ONNX exporter"
        return None

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
        if lengths is not None:
            lengths = lengths.to(torch.int64)
        return self.net((x - self.feature_mean) / self.feature_std, lengths).softmax(dim=-1)


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
        return self.model.probabilities(x, full_lengths(x))


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
