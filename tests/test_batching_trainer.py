"""Under the Trainer, every epoch's training order is the batcher's (seed, epoch) permutation."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import torch

from bigru_lightning.data import GaussianDataModule, TensorBatcher
from bigru_lightning.module import BiGRUClassifier
from tests.batch_probe import BatchProbe


def _fit(max_epochs: int, ckpt_path: str | None = None) -> BatchProbe:
    pl.seed_everything(0)
    dm = GaussianDataModule(samples_per_class=30, batch_size=16, seed=5)
    probe = BatchProbe(out_dir="probe")
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe, pl.callbacks.ModelCheckpoint(dirpath="ckpt", save_last=True)],
    )
    trainer.fit(BiGRUClassifier(hidden_size=4), datamodule=dm, ckpt_path=ckpt_path)
    return probe


def test_each_epoch_follows_the_seed_epoch_permutation(in_tmp: Path) -> None:
    probe = _fit(max_epochs=2)
    dm = GaussianDataModule(samples_per_class=30, batch_size=16, seed=5)
    dm.setup("fit")
    assert dm.train_split is not None
    reference = TensorBatcher(dm.train_split.tensors(), batch_size=16, shuffle=True, seed=5)
    orders = []
    for epoch in (0, 1):
        batches = probe.train_ids[epoch]
        assert [len(b) for b in batches] == [16, 16, 16]  # 48 training sequences, one slice each
        seen = [i for batch in batches for i in batch]
        expected = reference.epoch_indices(epoch)
        assert expected is not None
        assert seen == expected.tolist()
        orders.append(seen)
    assert orders[0] != orders[1] and sorted(orders[0]) == list(range(48))
    record = json.loads((in_tmp / "probe" / "rank0.json").read_text())
    assert record["train_ids"]["1"] == probe.train_ids[1]


def test_resumed_run_sees_the_same_epoch_order(in_tmp: Path) -> None:
    _fit(max_epochs=1)
    resumed = _fit(max_epochs=2, ckpt_path=str(in_tmp / "ckpt" / "last.ckpt"))
    dm = GaussianDataModule(samples_per_class=30, batch_size=16, seed=5)
    dm.setup("fit")
    assert dm.train_split is not None
    expected = TensorBatcher(dm.train_split.tensors(), batch_size=16, shuffle=True, seed=5).epoch_indices(1)
    assert expected is not None
    assert list(resumed.train_ids) == [1]
    assert [i for batch in resumed.train_ids[1] for i in batch] == expected.tolist()
    assert torch.equal(torch.tensor(resumed.train_ids[1]).flatten().sort().values, torch.arange(48))
