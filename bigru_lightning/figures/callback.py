"""The test-time figure callback: confusion matrix and ROC images in TensorBoard, the matrix as JSON.

:class:`TestFigureLogger` runs once after testing: it takes the confusion counts and the ROC that
``BiGRUClassifier`` collected over the test set (``pl_module.test_curves``), logs both figures to
TensorBoard as images (``test/confusion_matrix``, ``test/roc``) and writes the matrix to
``confusion_matrix.json`` in the run's folder, where ``scripts/plot.py`` reads it back. Nothing here
runs during training, and matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from bigru_lightning.figures.drawing import (
    CONFUSION_FILE,
    CONFUSION_TAG,
    ROC_TAG,
    confusion_figure,
    figure_to_rgb,
    normalise_rows,
    roc_figure,
    write_confusion_json,
)


class TestFigureLogger(Callback):
    """After testing: log the confusion matrix and ROC figures to TensorBoard and save the matrix as JSON.

    Reads ``pl_module.test_curves`` (``confusion``: counts (K, K); ``fpr``, ``tpr``: (K, n) binned
    one-vs-rest curves), which ``BiGRUClassifier`` fills at the end of its test epoch. Only rank 0
    writes. Without a logger nothing is written.
    """

    __test__ = False  # not a pytest test class, despite the name

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Draw and log the figures of the test epoch that just ended."""
        curves: dict[str, torch.Tensor] = getattr(pl_module, "test_curves", {})
        # Trainer.log_dir broadcasts from rank 0: every rank must ask, or DDP deadlocks.
        log_dir = trainer.log_dir
        if not curves or not trainer.is_global_zero or trainer.logger is None:
            return
        counts = curves["confusion"].numpy()
        labels = [str(name) for name in getattr(pl_module, "label_names", range(counts.shape[0]))]
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            write_confusion_json(Path(log_dir) / CONFUSION_FILE, counts, labels)
        for logger in trainer.loggers:
            if not isinstance(logger, TensorBoardLogger):
                continue
            images = {
                CONFUSION_TAG: confusion_figure(normalise_rows(counts), labels, counts),
                ROC_TAG: roc_figure(curves["fpr"].numpy(), curves["tpr"].numpy(), labels),
            }
            for tag, figure in images.items():
                logger.experiment.add_image(tag, figure_to_rgb(figure), trainer.global_step, dataformats="HWC")
            logger.experiment.flush()
