"""What the CLI adds to every run: the tutorial's per-epoch line and the TensorBoard HParams entry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from jsonargparse import Namespace
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


# The settings that matter, first (TensorBoard's HParams table shows the columns in this order).
KEY_SETTINGS = (
    "optimizer",
    "lr",
    "lr_scheduler",
    "max_epochs",
    "batch_size",
    "model.hidden_size",
    "model.num_layers",
    "model.bidirectional",
    "model.dropout",
    "model.pooling",
    "data",
)
HParam = int | float | str | bool


def run_settings(trainer: pl.Trainer, model: pl.LightningModule, datamodule: Any | None) -> dict[str, Any]:
    """The run's settings as actually used: optimizer, lr, scheduler, epochs, batch size, model and data.

    Read from the trainer (not the command line), so defaults and data-adaptive choices appear as
    used. Keys of :data:`KEY_SETTINGS` come first, then the other ``model.*`` and ``data.*`` values,
    as they are (:func:`write_hparams_entry` makes them readable).
    """
    optimizer = trainer.optimizers[0] if trainer.optimizers else None
    schedulers = [type(config.scheduler).__name__ for config in trainer.lr_scheduler_configs]
    settings: dict[str, Any] = {
        "optimizer": type(optimizer).__name__ if optimizer is not None else "none",
        "lr": optimizer.defaults.get("lr", "none") if optimizer is not None else "none",
        "lr_scheduler": ",".join(schedulers) or "none",
        "max_epochs": trainer.max_epochs,
    }
    data_hparams = dict(getattr(datamodule, "hparams", {}))
    settings["batch_size"] = getattr(datamodule, "batch_size", data_hparams.get("batch_size", "none"))
    settings.update({f"model.{key}": value for key, value in model.hparams.items()})
    if datamodule is not None:
        settings["data"] = type(datamodule).__name__
        settings.update({f"data.{key}": value for key, value in data_hparams.items()})
    ordered = {key: settings[key] for key in KEY_SETTINGS if key in settings}
    ordered.update(sorted((key, value) for key, value in settings.items() if key not in ordered))
    return ordered


def hparam_value(value: Any) -> HParam:
    """A value TensorBoard's HParams accepts (and the trials table shows): numbers and strings as they are.

    Anything else becomes the text the option takes on the command line: ``[64, 128, 64]`` for a list, ``null``
    for None, ``true``/``false`` for a boolean, ``torch.optim.SGD(lr=0.1)`` for a class path with
    its arguments.
    """
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return value
    # Booleans too: torch's hparams() takes them for numbers (bool is an int) and shows 0.0 / 1.0.
    return _option_text(value)


def _option_text(value: Any) -> str:
    """``value`` (lists, None, booleans, nested class paths, namespaces) as its one-line command-line text."""
    if isinstance(value, Namespace):
        value = value.as_dict()
    if isinstance(value, Mapping) and "class_path" in value:
        init_args = value.get("init_args") or {}
        arguments = ", ".join(f"{key}={_option_text(arg)}" for key, arg in dict(init_args).items())
        return f"{value['class_path']}({arguments})"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {_option_text(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_option_text(item) for item in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, torch.Tensor):
        return _option_text(value.tolist())
    return str(value)


def write_hparams_entry(logger: TensorBoardLogger, settings: dict[str, Any], metrics: dict[str, float]) -> None:
    """Write one TensorBoard HParams entry: the run's settings beside its final metrics.

    Settings of any type are accepted: numbers, strings and booleans as they are, anything else
    (lists, None, class paths) as its command-line text (``[64, 128, 64]``).

    Unlike ``TensorBoardLogger.log_hyperparams(params, metrics)`` this does not log the metrics again
    as scalars at step 0 (they are already logged where they were measured; the HParams table reads
    them from there).
    """
    from torch.utils.tensorboard.summary import hparams

    readable = {key: hparam_value(value) for key, value in settings.items()}  # lists, None, class paths: text
    experiment, start, end = hparams(readable, metrics)
    writer = event_file_writer(logger)
    for summary in (experiment, start, end):
        writer.add_summary(summary)
    logger.experiment.flush()


def event_file_writer(logger: TensorBoardLogger) -> Any:
    """The event file writer of ``logger``'s run: the one use of a non-public API in the project.

    torch's ``SummaryWriter`` has no public call that writes a raw summary into the run's own event
    file (``add_hparams`` writes into a new sub-run and logs the metrics again), and its public
    ``file_writer`` attribute is None once Lightning has closed the writer after fitting, so this
    calls ``SummaryWriter._get_file_writer()`` (which reopens it). ``tests/test_app.py`` fails loudly
    if torch changes it.
    """
    get_file_writer = getattr(logger.experiment, "_get_file_writer", None)
    writer = get_file_writer() if callable(get_file_writer) else None
    if writer is None or not hasattr(writer, "add_summary"):
        raise RuntimeError("torch.utils.tensorboard.SummaryWriter._get_file_writer().add_summary is gone")
    return writer
