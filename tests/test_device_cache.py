"""Data on the device: the size bound that decides it, and the DataModule's batches coming from the copy."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from bigru_lightning.data import GaussianDataModule
from bigru_lightning.data.base import device_cache_fits

MiB = 2**20


@pytest.mark.parametrize(
    ("device", "nbytes", "bound_mb", "expected"),
    [
        ("cuda:0", 10 * MiB, 2048.0, True),
        ("cuda:0", 2048 * MiB, 2048.0, True),  # the bound is inclusive
        ("cuda:0", 2048 * MiB + 1, 2048.0, False),
        ("cuda:1", 1, 0.0, False),  # 0 disables the cache
        ("cpu", 1, 2048.0, False),  # CPU training never copies
        ("mps", 5 * MiB, 4.0, False),
    ],
)
def test_device_cache_decision(device: str, nbytes: int, bound_mb: float, expected: bool) -> None:
    assert device_cache_fits(torch.device(device), nbytes, bound_mb) is expected


def _with_fake_trainer(dm: GaussianDataModule, device: str) -> GaussianDataModule:
    # The DataModule only asks its trainer for the root device, rank and world size.
    dm.trainer = SimpleNamespace(  # type: ignore[assignment]
        strategy=SimpleNamespace(root_device=torch.device(device)), global_rank=0, world_size=1
    )
    return dm


def test_datamodule_bound_counts_all_splits() -> None:
    dm = GaussianDataModule(samples_per_class=500, batch_size=64, device_cache_mb=1.0)
    dm.setup("fit")
    # 1000 train+val and 1000 test sequences of 20x1 float32 + int64 labels = 176,000 bytes
    _with_fake_trainer(dm, "cuda:0")
    assert dm._cache_device() == torch.device("cuda:0")
    dm.device_cache_mb = 0.16  # 167,772 bytes: under the data's size
    assert dm._cache_device() is None
    _with_fake_trainer(dm, "cpu")
    dm.device_cache_mb = 2048.0
    assert dm._cache_device() is None


def test_batches_come_from_one_device_copy() -> None:
    # The meta device stands in for an accelerator on a CPU-only machine: tensors "move" without storage.
    dm = _with_fake_trainer(GaussianDataModule(samples_per_class=100, batch_size=32), "meta")
    dm.setup("fit")
    train = dm.train_dataloader()
    assert all(t.device.type == "meta" for t in train.tensors)
    batches = list(train)
    assert len(batches) == 5 and all(t.device.type == "meta" for b in batches for t in b)
    again = dm.train_dataloader()  # reloaded dataloaders reuse the copy instead of copying again
    assert again.tensors[0] is train.tensors[0]
    assert dm.val_dataloader().tensors[0].device.type == "meta"
    assert dm.train_split is not None and dm.train_split.x.device.type == "cpu"  # the host copy is kept


def test_no_copy_over_the_bound() -> None:
    dm = _with_fake_trainer(GaussianDataModule(samples_per_class=100, batch_size=32, device_cache_mb=0.001), "meta")
    dm.setup("fit")
    assert all(t.device.type == "cpu" for t in next(iter(dm.train_dataloader())))
