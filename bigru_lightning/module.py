"""The LightningModule: the BiGRU, cross-entropy, per-stage torchmetrics, optimizer and predict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional
from torchmetrics import MeanMetric, Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassROC,
)

from bigru_lightning.errors import UserInputError
from bigru_lightning.metrics import ExactAUROC
from bigru_lightning.model import BiGRU, Pooling

Batch = Sequence[torch.Tensor]
STAGES = ("train", "val", "test")
ROC_THRESHOLDS = 201  # binned ROC: constant memory, 0.005 steps
EPOCH_STATES_KEY = "train_epoch_metric_states"  # checkpoint key of the running training-epoch sums
# The tutorial's Adam (lr 0.01) with torch's fused kernel: one operation per step for all parameters
# (per device and dtype) instead of about a dozen per parameter; the same update to rounding
# (docs/performance.md). CPU, CUDA, MPS and XPU run it; --optimizer.fused false turns it off.
DEFAULT_ADAM_ARGS: dict[str, Any] = {"lr": 0.01, "fused": True}


class BiGRUClassifier(pl.LightningModule):
    """A bidirectional GRU sequence classifier trained with cross-entropy.

    The optimizer comes from LightningCLI's ``--optimizer`` group (Adam, lr 0.01 by default, as in
    the tutorial, with torch's fused kernel); used from Python without the CLI,
    :meth:`configure_optimizers` gives the same.

    Args:
        input_size: Features per time step (linked from ``data.num_features`` by the CLI).
        num_classes: Number of classes (linked from ``data.num_classes`` by the CLI).
        hidden_size: Hidden units per direction and layer.
        num_layers: Stacked GRU layers.
        dropout: Dropout between GRU layers and before the head, in [0, 1).
        bidirectional: Also run the GRU backwards in time.
        pooling: ``final_state`` (both directions' final hidden states), ``last_step`` (the
            tutorial's ``out[:, -1]``), ``mean`` or ``max`` over time, ``attention`` (a learned
            softmax weighting of the steps).
        class_weights: Cross-entropy class weights: None (unweighted), ``auto`` (inverse class
            frequency on the training split), or one positive number per class.
        conv_channels: None (plain BiGRU), or the filters of each Conv1d+BatchNorm+ReLU block of an
            FCN branch beside the GRU (GRU-FCN), e.g. ``[128, 256, 128]``.
        conv_kernels: Kernel width of each conv block, one per entry of ``conv_channels``.
        downsample: Average every ``downsample`` steps before the GRU (length L -> ceil(L / k));
            1: off. The conv branch keeps the full resolution.
        label_smoothing: Cross-entropy label smoothing, in [0, 1); 0: off.
        rocket_features: 0 (off), or about how many random-kernel features (MiniRocket's fixed
            dilated kernels and their proportions of positive values) join the GRU's summary in the
            head; at least 84. Their biases are set from the training data when fitting starts.
        rocket_max_dilation: Largest dilation of the random kernels; (length - 1) // 8 spans a
            sequence of ``length`` steps.
    """

    def __init__(
        self,
        input_size: int = 1,
        num_classes: int = 2,
        hidden_size: int = 32,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = True,
        pooling: Pooling = "final_state",
        class_weights: Literal["auto"] | list[float] | None = None,
        conv_channels: list[int] | None = None,
        conv_kernels: list[int] = [8, 5, 3],  # noqa: B006 (never mutated; shown as the default in --help)
        downsample: int = 1,
        label_smoothing: float = 0.0,
        rocket_features: int = 0,
        rocket_max_dilation: int = 32,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)):
            raise UserInputError(f"model.label_smoothing must be a number in [0, 1); got {label_smoothing!r}")
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise UserInputError(f"model.label_smoothing must be a number in [0, 1); got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        try:
            self.net = BiGRU(
                input_size=input_size,
                hidden_size=hidden_size,
                num_layers=num_layers,
                num_classes=num_classes,
                dropout=dropout,
                bidirectional=bidirectional,
                pooling=pooling,
                conv_channels=conv_channels,
                conv_kernels=conv_kernels,
                downsample=downsample,
                rocket_features=rocket_features,
                rocket_max_dilation=rocket_max_dilation,
            )
        except ValueError as error:
            raise UserInputError(f"model.{error}") from error
        weights = torch.ones(num_classes)
        if isinstance(class_weights, list):
            weights = torch.tensor(class_weights, dtype=torch.float32)
            valid = bool(torch.isfinite(weights).all()) and bool((weights > 0).all())
            if weights.numel() != num_classes or not valid:
                raise UserInputError(
                    f"model.class_weights must be 'auto', null or {num_classes} positive numbers; got {class_weights!r}"
                )
        elif class_weights not in (None, "auto"):
            raise UserInputError(
                f"model.class_weights must be 'auto', null or a list of numbers; got {class_weights!r}"
            )
        self.register_buffer("class_weight", weights)
        self.register_buffer("feature_mean", torch.zeros(input_size))
        self.register_buffer("feature_std", torch.ones(input_size))
        self.class_weight: torch.Tensor
        self.feature_mean: torch.Tensor
        self.feature_std: torch.Tensor
        self.label_names: list[str] = [str(k) for k in range(num_classes)]
        self._rocket_ready = False  # set once the random-kernel branch is known to be fitted (or absent)
        # ModuleDict keys may not shadow nn.Module attributes ("train"), hence the suffixes.
        self.losses = nn.ModuleDict({f"{stage}_loss": MeanMetric(nan_strategy="disable") for stage in STAGES})
        self.metrics = nn.ModuleDict({f"{stage}_metrics": self._stage_metrics(stage, num_classes) for stage in STAGES})
        # Test stage only, for the figures (bigru_lightning.figures): raw confusion counts and a binned ROC.
        self.test_confusion = MulticlassConfusionMatrix(num_classes, validate_args=False)
        self.test_roc = MulticlassROC(num_classes, thresholds=ROC_THRESHOLDS, validate_args=False)
        self.test_curves: dict[str, torch.Tensor] = {}

    @staticmethod
    def _stage_metrics(stage: str, num_classes: int) -> MetricCollection:
        if stage != "test":  # updated every step: the accuracy alone, no compute groups to maintain
            accuracy = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
            return MetricCollection({"acc": accuracy}, prefix=f"{stage}/", compute_groups=False)
        # "auroc" keeps every test prediction; the others are updated from those at the stage's end
        # (score_test_predictions), so the members are updated one by one: no compute groups.
        metrics: dict[str, Metric | MetricCollection] = {
            "acc": MulticlassAccuracy(num_classes, average="micro", validate_args=False),
            "f1": MulticlassF1Score(num_classes, average="macro", validate_args=False),
            "auroc": ExactAUROC(num_classes),
        }
        return MetricCollection(metrics, prefix=f"{stage}/", compute_groups=False)

    # -- data facts handed over by the CLI ---------------------------------------------------------
    def set_input_scaling(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise inputs inside the model: ``(x - mean) / std`` per feature (saved with it)."""
        self.feature_mean.copy_(mean.reshape(-1))
        self.feature_std.copy_(std.reshape(-1))

    def set_class_weights(self, weights: torch.Tensor) -> None:
        """Set the cross-entropy class weights (used for ``class_weights: auto``)."""
        self.class_weight.copy_(weights.reshape(-1))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the label names, and the running training-epoch metrics (a mid-epoch checkpoint resumes them).

        The sums are those of all processes together (every rank takes part in a checkpoint's save).
        """
        checkpoint["label_names"] = list(self.label_names)
        states: dict[str, dict[str, torch.Tensor]] = {}
        for name, metric in self._epoch_accumulators("train").items():
            with metric.sync_context():  # no-op on one process
                states[name] = {
                    key: cast(torch.Tensor, value).detach().cpu() for key, value in metric.metric_state.items()
                }
        checkpoint[EPOCH_STATES_KEY] = states

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the label names and the training-epoch metrics' running sums (held by rank 0 alone)."""
        self.label_names = [str(name) for name in checkpoint.get("label_names", self.label_names)]
        accumulators = self._epoch_accumulators("train")
        for name, states in checkpoint.get(EPOCH_STATES_KEY, {}).items():
            metric = accumulators[name]
            metric.reset()
            if set(states) != set(metric.metric_state):  # sums of an older release's metric: the epoch restarts them
                continue
            if self.global_rank != 0:
                continue  # the other ranks start from zero: the sums across ranks stay the saved ones
            for key, value in states.items():
                setattr(metric, key, value.to(getattr(metric, key).device))

    def on_fit_start(self) -> None:
        """Fit the random-kernel branch on the data module's training split (when no checkpoint has set it).

        Every process fits the same branch (the fit is deterministic), so data parallelism needs no
        broadcast. Without a data module holding ``train_split``, the first training batch fits it.
        """
        split = getattr(getattr(self.trainer, "datamodule", None), "train_split", None)
        if split is not None:
            self._fit_rocket(split.x, split.lengths)

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        """Fit the random-kernel branch on this batch if nothing has fitted it yet (dataloaders given directly)."""
        if not self._rocket_ready:  # a Python flag: no device-to-host read of the buffer on every step
            self._fit_rocket(batch[0], batch[2] if len(batch) > 2 else None)

    def _fit_rocket(self, x: torch.Tensor, lengths: torch.Tensor | None) -> None:
        rocket = self.net.rocket
        if rocket is not None and not bool(rocket.fitted):
            rocket.fit(x, lengths, self.feature_mean, self.feature_std)
        self._rocket_ready = True

    # -- forward and steps -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits for raw sequences ``x`` (batch, time, features)."""
        x = (x - self.feature_mean) / self.feature_std
        return self.net(x, lengths)

    def _shared_step(self, batch: Batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch[0], batch[1]
        lengths = batch[2] if len(batch) > 2 else None
        logits = self(x, lengths)
        loss = functional.cross_entropy(logits, y, weight=self.class_weight, label_smoothing=self.label_smoothing)
        # The batch's mean loss once per sequence (a view): the epoch's mean is then weighted by batch size.
        # MeanMetric's own weights are dropped under nan_strategy="disable" (torchmetrics 1.9), and its NaN
        # check otherwise reads the device on every step.
        self._loss(stage).update(loss.detach().expand(y.shape[0]))
        if stage == "test":  # keep the probabilities: every other test metric is scored from them at the end
            self._test_predictions().update(logits.softmax(dim=-1), y)
        else:  # straight to the members: MetricCollection.update's bookkeeping costs more than the update
            for metric in self._metrics(stage).values():
                metric.update(logits, y)
        return loss, logits

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Cross-entropy on one training batch."""
        loss, _ = self._shared_step(batch, "train")
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Accumulate validation loss and accuracy."""
        self._shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        """Accumulate the test loss and keep the batch's class probabilities (scored at the epoch's end)."""
        self._shared_step(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Class probabilities, shape (batch, num_classes)."""
        x = batch[0]
        lengths = batch[2] if len(batch) > 2 else None
        return self(x, lengths).softmax(dim=-1)

    def _epoch_accumulators(self, stage: str) -> dict[str, Metric]:
        """The metrics that sum up ``stage``'s epoch, by name: the loss and each member of the collection."""
        return {"loss": self._loss(stage), **dict(self._metrics(stage).items(keep_base=True, copy_state=False))}

    def _test_predictions(self) -> ExactAUROC:
        """The test AUROC, which keeps every test prediction of this process."""
        return cast(ExactAUROC, self._metrics("test")["auroc"])

    def score_test_predictions(self) -> None:
        """Update the test accuracy, macro F1, confusion matrix and ROC from the kept test predictions.

        One update per piece of 65,536 predictions at the end of the test instead of four per batch: the
        test metrics' work per batch of 256 is about a tenth of what it was (``benchmarks/scoring_cost.py``);
        the values are the same (tested). Each process scores its own predictions; the
        metrics sync their sums when computed.
        """
        scored = [
            metric for name, metric in self._metrics("test").items(keep_base=True, copy_state=False) if name != "auroc"
        ]
        for probabilities, target in self._test_predictions().pieces():
            for metric in (*scored, self.test_confusion, self.test_roc):
                metric.update(probabilities, target)

    def _loss(self, stage: str) -> MeanMetric:
        return cast(MeanMetric, self.losses[f"{stage}_loss"])

    def _metrics(self, stage: str) -> MetricCollection:
        return cast(MetricCollection, self.metrics[f"{stage}_metrics"])

    def epoch_loss(self, stage: str) -> torch.Tensor:
        """Mean loss of ``stage`` (train, val or test) over the batches seen since its last reset."""
        return self._loss(stage).compute()

    def _log_epoch(self, stage: str) -> None:
        values = {f"{stage}/loss": self.epoch_loss(stage), **self._metrics(stage).compute()}
        self.log_dict(values, on_step=False, on_epoch=True, sync_dist=False)
        self._loss(stage).reset()
        self._metrics(stage).reset()

    def on_train_epoch_end(self) -> None:
        """Log ``train/loss`` and ``train/acc`` for the epoch."""
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        """Log ``val/loss`` and ``val/acc`` for the epoch."""
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        """Log ``test/loss``, ``test/acc``, ``test/f1`` and ``test/auroc``; keep the test curves."""
        self.score_test_predictions()
        self._log_epoch("test")
        self._keep_test_curves()

    def _keep_test_curves(self) -> None:
        """Store the test set's confusion counts and ROC in :attr:`test_curves` (read by the figure callback)."""
        fpr, tpr, thresholds = self.test_roc.compute()
        self.test_curves = {
            "confusion": self.test_confusion.compute().detach().cpu(),
            "fpr": cast(torch.Tensor, fpr).detach().cpu(),
            "tpr": cast(torch.Tensor, tpr).detach().cpu(),
            "thresholds": cast(torch.Tensor, thresholds).detach().cpu(),
        }
        self.test_confusion.reset()
        self.test_roc.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam with lr 0.01, the tutorial's optimizer, fused (the CLI's ``--optimizer`` replaces it)."""
        return torch.optim.Adam(self.parameters(), **DEFAULT_ADAM_ARGS)
