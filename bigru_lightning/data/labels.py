"""Class labels: as read (ints or strings), normalised, and encoded as small integer codes.

The one place the file readers (:mod:`.files`) and the memory-mapped store (:mod:`.store`) both
take their label rules from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bigru_lightning.errors import UserInputError


@dataclass(frozen=True)
class EncodedLabels:
    """Labels held as each sequence's index into the distinct labels (a store's form: N small integers).

    Attributes:
        codes: Index into ``names`` of each sequence, shape (N,), the smallest unsigned integer type
            that holds it.
        names: The distinct labels, sorted (numbers numerically, text alphabetically); each occurs.
    """

    codes: np.ndarray
    names: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``codes``: (N,)."""
        return tuple(self.codes.shape)

    @property
    def size(self) -> int:
        """Number of labels N."""
        return int(self.codes.size)

    def values(self) -> np.ndarray:
        """The labels themselves, shape (N,) (an array of N values: for small files and checks)."""
        return self.names[self.codes]


def label_classes(labels: np.ndarray | EncodedLabels) -> EncodedLabels:
    """The sorted distinct labels and each sequence's index into them (``np.unique`` for raw labels)."""
    if isinstance(labels, EncodedLabels):
        return labels
    names, inverse = np.unique(labels, return_inverse=True)  # vectorised: no Python object per sequence
    return EncodedLabels(codes=inverse.reshape(-1).astype(smallest_index_type(len(names))), names=names)


def smallest_index_type(count: int) -> np.dtype[Any]:
    """The smallest unsigned integer type that holds every index in ``range(count)``."""
    return np.min_scalar_type(max(count - 1, 0))


def normalise_labels(values: np.ndarray, where: str) -> np.ndarray:
    """Labels as an int64 array (integer labels) or a str array; floats and objects are refused.

    Strings that all spell integers exactly (``"1"``, ``"10"``) become ints, so they sort numerically.
    """
    labels = np.asarray(values)
    if labels.dtype.kind == "b":
        return labels.astype(np.int64)
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    if labels.dtype.kind == "S":
        try:
            labels = np.char.decode(labels, "utf-8")
        except UnicodeDecodeError as error:
            raise UserInputError(f"{where}: labels are bytes that are not UTF-8 text") from error
    if labels.dtype.kind == "U":
        texts = [str(v) for v in labels.reshape(-1)]
        if texts and all(_is_int_text(v) for v in texts):
            return np.array([int(v) for v in texts], dtype=np.int64).reshape(labels.shape)
        return labels
    if labels.dtype.kind == "f":
        raise UserInputError(f"{where}: labels are floating-point numbers; class labels must be integers or strings")
    raise UserInputError(f"{where}: labels of dtype {labels.dtype} are not accepted; use integers or strings")


def _is_int_text(text: str) -> bool:
    try:
        return str(int(text)) == text
    except ValueError:
        return False
