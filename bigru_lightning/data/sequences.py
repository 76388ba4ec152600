"""The one shape every source of sequences gives: :class:`SequenceFile` (a file's readers, arrays held in memory)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bigru_lightning.data.labels import EncodedLabels

if TYPE_CHECKING:
    from bigru_lightning.data.store import LazyArray


@dataclass
class SequenceFile:
    """The sequences of one file, stacked.

    Attributes:
        x: Sequences, float32, shape (N, T, F), padded with zeros at the end where ``lengths``
            says so (possibly a read-only memory map of the file).
        lengths: True length of each sequence, int64, shape (N,), each in [1, T]; None when every
            sequence is T steps long.
        labels: Raw labels, shape (N,), int64 or strings, or (files read through the store)
            :class:`EncodedLabels`; None when the file has none. :func:`label_classes` gives both forms
            as classes and codes.
        ids: Sequence ids as strings, or None when the file has none (then the index identifies them);
            read on demand (``ids[start:stop]``) when the file is read through the store.
        path: The file read.
    """

    x: np.ndarray | LazyArray
    lengths: np.ndarray | None
    labels: np.ndarray | EncodedLabels | None
    ids: Sequence[str] | None
    path: Path

    @property
    def num_sequences(self) -> int:
        """Number of sequences N."""
        return int(self.x.shape[0])

    @property
    def num_steps(self) -> int:
        """Padded length T."""
        return int(self.x.shape[1])

    @property
    def num_features(self) -> int:
        """Features per time step F."""
        return int(self.x.shape[2])
