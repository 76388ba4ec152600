"""Batches cut from stacked tensors: one index-select per batch, no per-sample Python work.

``torch.utils.data.DataLoader(TensorDataset(...))`` indexes and collates sample by sample; for
short sequences that overhead dominates the step. :class:`TensorBatcher` is a plain iterable that
Lightning accepts as a dataloader: each batch is one slice (in order) or one ``index_select``
(shuffled) of the stacked tensors. The shuffle order of epoch ``e`` comes from a generator seeded
with ``(seed, e)``, so it never depends on how many epochs ran in this process (resume is exact).
Lightning calls :meth:`set_epoch` through ``batcher.sampler`` at the start of every epoch.

Under data parallelism every rank takes a disjoint strided shard of the epoch's permutation; all
ranks yield the same number of batches and the shards together cover every sample exactly once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

Batch = tuple[torch.Tensor, ...]


class TensorBatcher:
    """Iterate over batches of equally long tensors (first dimension = samples).

    Args:
        tensors: Tensors sharing their first dimension, e.g. ``(x, y)`` or ``(x, y, lengths)``.
        batch_size: Samples per batch (the last batch of a rank may be smaller).
        shuffle: Draw a new permutation every epoch (seeded by ``(seed, epoch)``).
        seed: Seed of the per-epoch permutation.
        rank: This process's rank in data parallelism.
        world_size: Number of data-parallel processes.
        consumed_batches: Reports how many batches of the current epoch training has finished (the
            Trainer's counter); checkpointed through :meth:`state_dict` so that a run resumed from a
            mid-epoch checkpoint continues with the next batch of the same permutation.
    """

    def __init__(
        self,
        tensors: Batch,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        consumed_batches: Callable[[], int] | None = None,
    ) -> None:
        if not tensors:
            raise ValueError("TensorBatcher needs at least one tensor")
        num_samples = tensors[0].shape[0]
        if any(t.shape[0] != num_samples for t in tensors):
            raise ValueError("all tensors must have the same number of samples")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        self.tensors = tensors
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.consumed_batches = consumed_batches
        self._yielded = 0
        self._resume_at: tuple[int, int] | None = None
        # Lightning looks for ``dataloader.sampler.set_epoch``; the batcher is its own sampler.
        self.sampler = self
        self.batch_sampler = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next iteration uses."""
        self.epoch = int(epoch)

    def to(self, device: torch.device | str) -> TensorBatcher:
        """Move the stacked tensors to ``device`` once (no copy per step afterwards)."""
        self.tensors = tuple(t.to(device) for t in self.tensors)
        return self

    @property
    def shard_size(self) -> int:
        """Samples of the largest rank's shard of one epoch."""
        return math.ceil(self.num_samples / self.world_size)

    def __len__(self) -> int:
        """Batches per epoch on every rank."""
        return max(1, math.ceil(self.shard_size / self.batch_size))

    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor | None:
        """Sample indices of this rank for ``epoch`` (None: the identity on a single process)."""
        epoch = self.epoch if epoch is None else epoch
        # int32 holds every index below 2**31 at half the memory; randperm draws the same permutation.
        dtype = torch.int32 if self.num_samples < 2**31 else torch.int64
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(_mix(self.seed, epoch))
            order: torch.Tensor | None = torch.randperm(self.num_samples, generator=generator, dtype=dtype)
        elif self.world_size > 1:
            order = torch.arange(self.num_samples, dtype=dtype)
        else:
            order = None
        if order is not None and self.world_size > 1:
            order = order[self.rank :: self.world_size]
        return order

    def _bounds(self, shard_length: int) -> list[tuple[int, int]]:
        num_batches = len(self)
        bounds = [(i * self.batch_size, min((i + 1) * self.batch_size, shard_length)) for i in range(num_batches)]
        if bounds[-1][0] < bounds[-1][1] or shard_length == 0:
            return bounds
        # A shorter shard would end one batch early: split it into as many near-equal parts.
        edges = [round(i * shard_length / num_batches) for i in range(num_batches + 1)]
        return list(itertools.pairwise(edges))

    def __iter__(self) -> Iterator[Batch]:
        skip = 0
        if self._resume_at is not None and self._resume_at[0] == self.epoch:
            skip = self._resume_at[1]
        self._resume_at = None
        self._yielded = skip
        order = self.epoch_indices()
        if order is None:
            for start in range(skip * self.batch_size, self.num_samples, self.batch_size):
                self._yielded += 1
                yield tuple(t[start : start + self.batch_size] for t in self.tensors)
            return
        order = order.to(self.tensors[0].device)
        for start, stop in self._bounds(order.numel())[skip:]:
            index = order[start:stop]
            self._yielded += 1
            yield tuple(t.index_select(0, index) for t in self.tensors)

    def state_dict(self) -> dict[str, Any]:
        """Where training stands in the epoch: the epoch and the batches finished (saved in checkpoints)."""
        consumed = self.consumed_batches() if self.consumed_batches is not None else self._yielded
        return {"epoch": self.epoch, "consumed": int(consumed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume after ``state["consumed"]`` batches of epoch ``state["epoch"]`` on the next iteration."""
        self._resume_at = (int(state["epoch"]), int(state["consumed"]))


def _mix(seed: int, epoch: int) -> int:
    """A 63-bit seed from ``(seed, epoch)``; distinct epochs give unrelated permutations."""
    value = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % (1 << 64)
    value ^= value >> 31
    return value % (1 << 63)
