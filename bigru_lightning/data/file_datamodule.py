"""``FileDataModule``: train, validate and test on the user's own sequence files (.npz, .csv, .ts)."""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import torch

from bigru_lightning.data.base import SequenceDataModule, SequenceSplit
from bigru_lightning.data.files import SequenceFile, read_sequences
from bigru_lightning.data.labels import label_classes, smallest_index_type
from bigru_lightning.data.store import LazyArray, TensorRows
from bigru_lightning.errors import UserInputError

_CHUNK = 4096  # sequences per chunk when fitting the standardisation


class FileDataModule(SequenceDataModule):
    """Sequences read from your own files: ``.npz``, ``.csv`` (long format) or UCR/UEA ``.ts``.

    Formats (chosen by suffix): ``.npz`` with arrays ``X`` (N, T, F) or (N, T), ``y`` (N,) of ints
    or strings, optional ``lengths`` (N,) and ``sequence_id`` (N,); ``.csv`` with one row per time
    step and columns ``sequence_id``, ``label``, optional ``time`` (order within a sequence), every
    other column a numeric feature; ``.ts`` read by aeon (``pip install .[ts]``). Sequences of
    different lengths are padded at the end and batched with their lengths.

    Whatever split is not given as a file is split off ``train_file``, stratified by class
    (scikit-learn, ``random_state=seed``). Labels are mapped to class indices in sorted order
    (numbers numerically, strings alphabetically); ``label_names`` keeps the original labels and is
    saved in the model's checkpoint. Per-feature mean and std are fitted on the training split only
    (padding excluded); the model standardises its raw inputs with them and saves them too.

    Args:
        train_file: Training data (.npz, .csv or .ts); must have labels.
        val_file: Validation data; None = split ``val_fraction`` off ``train_file``.
        test_file: Test data; None = split ``test_fraction`` off ``train_file``.
        val_fraction: Share of ``train_file`` held out for validation when ``val_file`` is None, in
            [0, 1); 0 = no validation: every training sequence trains (the recipe's choice for small
            files, see docs/recipe.md; the run then keeps the last epoch's weights).
        test_fraction: Share of ``train_file`` held out for testing when ``test_file`` is None, in (0, 1).
        standardize: Standardise each feature with the training split's mean and std (inside the model).
        batch_size: Sequences per batch; None (the project's default) = the whole training split in
            one step. For files of more than a few hundred sequences give e.g. 64 or 256.
        seed: Seed of the splits and of the per-epoch shuffle.
        device_cache_mb: On an accelerator, data up to this size is moved there once.
        store: Read .csv/.parquet files through the memory-mapped store (prepared once, cached next
            to the file as ``<file>.bigru-store``; batches are read from it on demand, so data larger
            than memory trains in bounded memory). None: when the file has a current store or 5 million rows or more.
    """

    def __init__(
        self,
        train_file: str,
        val_file: str | None = None,
        test_file: str | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        standardize: bool = True,
        batch_size: int | None = None,
        seed: int = 42,
        device_cache_mb: float = 2048.0,
        store: bool | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, device_cache_mb=device_cache_mb)
        self.save_hyperparameters()
        for name, fraction, low in (("val_fraction", val_fraction, 0.0), ("test_fraction", test_fraction, 1e-12)):
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not low <= fraction < 1.0:
                accepted = "[0, 1)" if low == 0.0 else "(0, 1)"
                raise UserInputError(f"data.{name} must be a number in {accepted}; got {fraction!r}")
        held_out = (val_fraction if val_file is None else 0.0) + (test_fraction if test_file is None else 0.0)
        if held_out >= 1.0:
            raise UserInputError(
                f"data.val_fraction + data.test_fraction must be < 1 (both are split off data.train_file); "
                f"got {val_fraction} + {test_fraction}"
            )
        self.standardize = bool(standardize)
        self.train_file = read_sequences(train_file, True, "data.train_file", store)
        self.val_file = read_sequences(val_file, True, "data.val_file", store) if val_file is not None else None
        self.test_file = read_sequences(test_file, True, "data.test_file", store) if test_file is not None else None
        self.num_features = self.train_file.num_features
        for name, other in (("data.val_file", self.val_file), ("data.test_file", self.test_file)):
            if other is not None and other.num_features != self.num_features:
                raise UserInputError(
                    f"{name} {other.path} has {other.num_features} features per step; data.train_file "
                    f"{self.train_file.path} has {self.num_features}: every file needs the same features"
                )
        assert self.train_file.labels is not None
        classes = label_classes(self.train_file.labels).names  # sorted: numbers numerically, strings alphabetically
        if classes.size < 2:
            raise UserInputError(
                f"data.train_file {self.train_file.path}: only one class ({classes[0]!s}); need at least two"
            )
        self.label_names = [str(c) for c in classes]
        self.num_classes = len(self.label_names)
        self.class_index = {name: k for k, name in enumerate(self.label_names)}
        self.train_targets = self._targets(self.train_file, "data.train_file")
        self.val_targets = self._targets(self.val_file, "data.val_file") if self.val_file is not None else None
        self.test_targets = self._targets(self.test_file, "data.test_file") if self.test_file is not None else None
        self.train_index, self.val_index, self.test_index = self._split_indices(val_fraction, test_fraction)

    def _targets(self, data: SequenceFile, param: str) -> np.ndarray:
        """Class indices of ``data``'s labels (smallest unsigned type); a label the training file lacks is an error."""
        assert data.labels is not None
        encoded = label_classes(data.labels)
        names = [str(v) for v in encoded.names]
        unknown = sorted(set(names) - set(self.class_index))
        if unknown:
            raise UserInputError(
                f"{param} {data.path}: labels {', '.join(unknown[:5])} do not occur in data.train_file "
                f"(its classes: {', '.join(self.label_names)})"
            )
        to_class = np.array([self.class_index[name] for name in names], dtype=smallest_index_type(self.num_classes))
        return to_class[encoded.codes]

    def _split_indices(
        self, val_fraction: float, test_fraction: float
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Indices into ``train_file`` of the train split and of the val/test splits taken from it."""
        y = self.train_targets
        total = len(y)
        rest = np.arange(total, dtype=np.int32 if total < 2**31 else np.int64)  # 4 bytes per sequence, not 8
        held: dict[str, np.ndarray | None] = {"val": None, "test": None}
        for name, fraction, given in (("test", test_fraction, self.test_file), ("val", val_fraction, self.val_file)):
            if given is not None or fraction == 0:
                continue
            from sklearn.model_selection import train_test_split  # here: a third of a second; most runs split nothing

            size = math.ceil(total * fraction)
            try:
                rest, held[name] = train_test_split(rest, test_size=size, random_state=self.seed, stratify=y[rest])
            except ValueError as error:
                raise UserInputError(
                    f"data.train_file {self.train_file.path}: {total} sequences in {self.num_classes} classes are too "
                    f"few to split off data.{name}_fraction={fraction} stratified (every class needs a sequence in "
                    f"each split; smallest class: {int(np.bincount(y).min())}); give more data or data.{name}_file"
                ) from error
        return np.sort(rest), _sorted(held["val"]), _sorted(held["test"])

    def make_splits(self) -> tuple[SequenceSplit, SequenceSplit, SequenceSplit]:
        """Stack the three splits and fit the standardisation on the training split."""
        variable = any(
            f is not None and f.lengths is not None for f in (self.train_file, self.val_file, self.test_file)
        )
        train = _take(self.train_file, self.train_targets, self.train_index, variable)
        if self.val_file is not None and self.val_targets is not None:
            val = _take(self.val_file, self.val_targets, None, variable)
        elif self.val_index is None:  # val_fraction 0: no validation split
            val = _take(self.train_file, self.train_targets, np.arange(0), variable)
        else:
            val = _take(self.train_file, self.train_targets, self.val_index, variable)
        if self.test_file is not None and self.test_targets is not None:
            test = _take(self.test_file, self.test_targets, None, variable)
        else:
            test = _take(self.train_file, self.train_targets, self.test_index, variable)
        if self.standardize:
            self.feature_mean, self.feature_std = fit_standardisation(train.x, train.lengths)
        return train, val, test

    @property
    def has_validation(self) -> bool:
        """Whether there is a validation split (a ``val_file``, or ``val_fraction`` > 0)."""
        return self.val_file is not None or self.val_index is not None

    def val_dataloader(self) -> Any:
        """Validation batches in a fixed order; none (an empty list) when ``val_fraction`` is 0."""
        if not self.has_validation:
            return []
        return super().val_dataloader()


def fit_standardisation(x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std over the valid steps of ``x`` (N, T, F); padding does not count.

    A feature that is constant over the split gets std 1, so standardising never divides by zero.
    """
    num_features = x.shape[2]
    total = torch.zeros(num_features, dtype=torch.float64)
    total_sq = torch.zeros(num_features, dtype=torch.float64)
    count = 0
    for start in range(0, x.shape[0], _CHUNK):
        chunk = x[start : start + _CHUNK].to(torch.float64)
        if lengths is not None:
            chunk_lengths = lengths[start : start + _CHUNK]
            valid = torch.arange(x.shape[1])[None, :] < chunk_lengths[:, None]
            chunk = chunk * valid[..., None]
            count += int(chunk_lengths.sum())
        else:
            count += chunk.shape[0] * chunk.shape[1]
        total += chunk.sum(dim=(0, 1))
        total_sq += (chunk * chunk).sum(dim=(0, 1))
    mean = total / max(count, 1)
    var = (total_sq / max(count, 1) - mean * mean).clamp(min=0.0)
    std = var.sqrt()
    std = torch.where(std > 1e-12 * (1.0 + mean.abs()), std, torch.ones_like(std))
    return mean.float(), std.float()


def _sorted(index: np.ndarray | None) -> np.ndarray | None:
    return None if index is None else np.sort(index)


def _take(data: SequenceFile, targets: np.ndarray, index: np.ndarray | None, variable: bool) -> SequenceSplit:
    """The rows ``index`` of ``data`` (all rows when None) as a split; lengths when any file has them."""
    if isinstance(data.x, LazyArray):
        # The store: rows, targets and lengths are taken per batch through ``index`` (duck-typed tensors:
        # shape, slicing, index_select), so a split costs only its index, never a copy of N values.
        rows = cast(torch.Tensor, TensorRows(data.x, index))
        y = cast(torch.Tensor, TensorRows(targets, index, torch.int64))
        lengths = None
        if data.lengths is not None:
            lengths = cast(torch.Tensor, TensorRows(data.lengths, index, torch.int64))
        if variable and lengths is None:
            lengths = torch.full((rows.shape[0],), rows.shape[1], dtype=torch.int64)
        return SequenceSplit(rows, y, lengths)
    if index is None:
        x = torch.from_numpy(np.asarray(data.x))  # the whole file: a memory map stays mapped
        y = torch.from_numpy(targets.astype(np.int64))
        lengths = None if data.lengths is None else torch.from_numpy(data.lengths)
    else:
        x = torch.from_numpy(np.ascontiguousarray(data.x[index]))  # reads only these rows
        y = torch.from_numpy(targets[index].astype(np.int64))
        lengths = None if data.lengths is None else torch.from_numpy(data.lengths[index])
    if variable and lengths is None:
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64)
    return SequenceSplit(x, y, lengths)
