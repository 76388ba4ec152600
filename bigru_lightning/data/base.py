"""The shared DataModule machinery: three splits of stacked tensors, batched without per-sample work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import lightning.pytorch as pl
import torch

from bigru_lightning.data.batching import Batch, TensorBatcher
from bigru_lightning.errors import UserInputError


@dataclass
class SequenceSplit:
    """One split of a data set, stacked.

    Attributes:
        x: Sequences, float32, shape (N, T, F), padded at the end where ``lengths`` says so.
        y: Class indices, int64, shape (N,).
        lengths: True length of each sequence, int64, shape (N,), or None when all are T long.
    """

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        """Number of sequences."""
        return int(self.y.shape[0])

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """``(x, y)`` or ``(x, y, lengths)``: what one batch holds."""
        return (self.x, self.y) if self.lengths is None else (self.x, self.y, self.lengths)


def device_cache_fits(device: torch.device, nbytes: int, bound_mb: float) -> bool:
    """Whether data of ``nbytes`` bytes is held on ``device``: an accelerator, and at most ``bound_mb`` MiB.

    CPU training never copies; ``bound_mb <= 0`` disables the cache.
    """
    return device.type != "cpu" and bound_mb > 0 and nbytes <= bound_mb * 2**20


class SequenceDataModule(pl.LightningDataModule):
    """Base of the project's DataModules: holds train/val/test splits and batches them.

    Subclasses set ``num_features``, ``num_classes`` and ``label_names`` in ``__init__`` (the CLI
    links the first two into the model) and implement :meth:`make_splits`.

    Args:
        batch_size: Sequences per training batch; None means the whole training split (one
            optimizer step per epoch, as in the tutorial). Validation and test use the same size.
        seed: Seed of the data and of the per-epoch shuffle.
        device_cache_mb: When training on an accelerator, splits that together take at most this
            many MiB are moved to the device once, so no step copies from the host. 0 disables it.
    """

    num_features: int
    num_classes: int
    label_names: list[str]

    def __init__(self, batch_size: int | None = None, seed: int = 42, device_cache_mb: float = 2048.0) -> None:
        super().__init__()
        if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
            raise UserInputError(
                f"data.batch_size must be a positive integer or null (whole split); got {batch_size!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UserInputError(f"data.seed must be a non-negative integer; got {seed!r}")
        if not device_cache_mb >= 0:
            raise UserInputError(f"data.device_cache_mb must be >= 0; got {device_cache_mb!r}")
        self.batch_size = batch_size
        self.seed = seed
        self.device_cache_mb = float(device_cache_mb)
        self.train_split: SequenceSplit | None = None
        self.val_split: SequenceSplit | None = None
        self.test_split: SequenceSplit | None = None
        self.feature_mean: torch.Tensor | None = None
        self.feature_std: torch.Tensor | None = None
        self._device_splits: dict[str, Batch] = {}

    def make_splits(self) -> tuple[SequenceSplit, SequenceSplit, SequenceSplit]:
        """Create (train, val, test). Implemented by subclasses."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Create the splits once (later calls reuse them)."""
        if self.train_split is None:
            self.train_split, self.val_split, self.test_split = self.make_splits()

    def _batcher(self, split: SequenceSplit | None, name: str, shuffle: bool) -> TensorBatcher:
        if split is None:
            self.setup(name)
            split = {"train": self.train_split, "val": self.val_split, "test": self.test_split}[name]
            assert split is not None
        rank, world_size = 0, 1
        trainer = self.trainer
        if trainer is not None:
            rank, world_size = trainer.global_rank, trainer.world_size
        train_size = len(self.train_split) if self.train_split is not None else len(split)
        batch_size = self.batch_size or max(1, -(-train_size // world_size))
        consumed = None
        fit_loop = getattr(trainer, "fit_loop", None)
        if fit_loop is not None and name == "train":
            progress = fit_loop.epoch_loop.batch_progress

            def consumed() -> int:
                return int(cast(Any, progress.current).processed)

        tensors = split.tensors()
        device = self._cache_device()
        if device is not None:
            tensors = self._on_device(name, tensors, device)
        return TensorBatcher(
            tensors,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            consumed_batches=consumed,
        )

    def _cache_device(self) -> torch.device | None:
        """The accelerator to hold the data on, or None (CPU, or data over ``device_cache_mb``)."""
        trainer = self.trainer
        if trainer is None:
            return None
        splits = [s for s in (self.train_split, self.val_split, self.test_split) if s is not None]
        nbytes = sum(t.numel() * t.element_size() for s in splits for t in s.tensors())
        device = trainer.strategy.root_device
        return device if device_cache_fits(device, nbytes, self.device_cache_mb) else None

    def _on_device(self, name: str, tensors: Batch, device: torch.device) -> Batch:
        """``tensors`` of split ``name`` on ``device``, copied there once and reused by later dataloaders."""
        cached = self._device_splits.get(name)
        if cached is None or cached[0].device != device:
            cached = tuple(t.to(device) for t in tensors)
            self._device_splits[name] = cached
        return cached

    def train_dataloader(self) -> TensorBatcher:
        """Shuffled training batches, a new order each epoch."""
        return self._batcher(self.train_split, "train", shuffle=True)

    def val_dataloader(self) -> TensorBatcher:
        """Validation batches in a fixed order."""
        return self._batcher(self.val_split, "val", shuffle=False)

    def test_dataloader(self) -> TensorBatcher:
        """Test batches in a fixed order."""
        return self._batcher(self.test_split, "test", shuffle=False)

    def predict_dataloader(self) -> TensorBatcher:
        """The test split, in order, for ``Trainer.predict``."""
        return self._batcher(self.test_split, "test", shuffle=False)
