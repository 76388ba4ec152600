"""A test-only callback that records what each rank trained and validated on, per epoch.

Used in-process (tests/test_batching_trainer.py) and by ``--trainer.callbacks`` in subprocess runs
(tests/test_ddp.py). Samples are identified by looking their rows up in the DataModule's splits, so
the batches themselves are not changed. On ``on_fit_end`` each rank writes ``<out_dir>/rank<R>.json``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch.nn import functional


def _row_keys(x: torch.Tensor) -> list[bytes]:
    flat = x.detach().to("cpu", torch.float32).reshape(x.shape[0], -1).numpy()
    return [row.tobytes() for row in flat]


class BatchProbe(Callback):
    """Record training sample ids per epoch and batch, validation ids and losses, synced metrics."""

    def __init__(self, out_dir: str = "probe") -> None:
        self.out_dir = out_dir
        self.train_ids: dict[int, list[list[int]]] = defaultdict(list)
        self.val_ids: dict[int, list[int]] = defaultdict(list)
        self.val_loss_sum: dict[int, float] = defaultdict(float)
        self.synced: dict[int, dict[str, float]] = {}
        self._train_index: dict[bytes, int] = {}
        self._val_index: dict[bytes, int] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        dm: Any = trainer.datamodule
        dm.setup(stage)
        self._train_index = {key: i for i, key in enumerate(_row_keys(dm.train_split.x))}
        self._val_index = {key: i for i, key in enumerate(_row_keys(dm.val_split.x))}

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        ids = [self._train_index[key] for key in _row_keys(batch[0])]
        self.train_ids[trainer.current_epoch].append(ids)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        self.val_ids[epoch].extend(self._val_index[key] for key in _row_keys(batch[0]))
        with torch.no_grad():
            loss = functional.cross_entropy(pl_module(batch[0]), batch[1], reduction="sum")
        self.val_loss_sum[epoch] += float(loss)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        self.synced[trainer.current_epoch] = {k: float(metrics[k]) for k in ("val/loss", "val/acc") if k in metrics}

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "train_ids": {str(e): batches for e, batches in self.train_ids.items()},
            "val_ids": {str(e): ids for e, ids in self.val_ids.items()},
            "val_loss_sum": {str(e): v for e, v in self.val_loss_sum.items()},
            "synced": {str(e): v for e, v in self.synced.items()},
        }
        out = Path(self.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
