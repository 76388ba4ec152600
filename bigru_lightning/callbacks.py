"""What the CLI adds to every run: the tutorial's per-epoch line and the TensorBoard HParams entry."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.logger import _convert_params, _flatten_dict, _sanitize_params
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger


class EpochLinePrinter(Callback):
    """Print ``Epoch [e/E], Train Loss: x.xxxx, Validation Loss: y.yyyy`` once per epoch.

    Lines go through the progress bar's ``print`` when a TQDM bar is active, so they stack above it
    instead of being interleaved with it. Only rank 0 prints.
    """

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Print the finished epoch's training and validation loss."""
        epoch_loss = getattr(pl_module, "epoch_loss", None)
        if epoch_loss is None or trainer.sanity_checking:
            return
        train_loss = float(epoch_loss("train"))
        val_loss = trainer.callback_metrics.get("val/loss")
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        line = f"Epoch [{trainer.current_epoch + 1}/{max_epochs}], Train Loss: {train_loss:.4f}"
        if val_loss is not None:
            line += f", Validation Loss: {float(val_loss):.4f}"
        if not trainer.is_global_zero:
            return
        bar = trainer.progress_bar_callback
        if isinstance(bar, TQDMProgressBar) and bar.is_enabled:
            bar.print(line)
        else:
            print(line, flush=True)


def write_hparams_entry(logger: TensorBoardLogger, params: dict[str, Any], metrics: dict[str, float]) -> None:
    """Write one TensorBoard HParams entry: the run's hyper-parameters beside its final metrics.

    Unlike ``TensorBoardLogger.log_hyperparams(params, metrics)`` this does not log the metrics again
    as scalars at step 0 (they are already logged where they were measured).
    """
    from torch.utils.tensorboard.summary import hparams

    flat = _sanitize_params(_flatten_dict(_convert_params(params)))
    experiment, start, end = hparams(flat, metrics)
    writer = logger.experiment._get_file_writer()
    for summary in (experiment, start, end):
        writer.add_summary(summary)
    logger.experiment.flush()
