"""``GaussianDataModule``: generated Gaussian sequence classes, the tutorial's data by default."""

from __future__ import annotations

import numpy as np
import torch

from bigru_lightning.data.base import SequenceDataModule, SequenceSplit
from bigru_lightning.data.gaussian import GaussianTask
from bigru_lightning.errors import UserInputError


class GaussianDataModule(SequenceDataModule):
    """Sequences drawn from known Gaussian processes, one class per entry of ``means``.

    The defaults are the tutorial's: 50 sequences of N(+1, 1) and 50 of N(-1, 1), 20 steps of one
    feature, split 80/20 into train/val by scikit-learn (stratified, ``random_state=seed``), full
    batch. The test set is an independent draw that training and model selection never see.

    Args:
        samples_per_class: Sequences per class for train + val (with ``class_priors``, the total
            ``samples_per_class * K`` is shared out in proportion to the priors).
        seq_len: Time steps per sequence.
        num_features: Features per time step.
        means: One entry per class: a scalar (same mean for every feature) or one value per feature.
        std: Marginal standard deviation: one value, or one per class.
        phi: AR(1) correlation across time in (-1, 1): one value, or one per class (0 = i.i.d. steps).
        class_priors: Class probabilities (imbalance); None = balanced.
        val_fraction: Share of the train + val pool held out for validation, in (0, 1).
        test_samples_per_class: Sequences per class in the test set; None = ``samples_per_class``.
        batch_size: Sequences per batch; None = the whole training split (the tutorial's step).
        seed: Seed of the data, of the split and of the per-epoch shuffle.
        device_cache_mb: On an accelerator, data up to this size is moved there once.
    """

    def __init__(
        self,
        samples_per_class: int = 50,
        seq_len: int = 20,
        num_features: int = 1,
        means: list[float | list[float]] = [1.0, -1.0],  # noqa: B006 (never mutated)
        std: float | list[float] = 1.0,
        phi: float | list[float] = 0.0,
        class_priors: list[float] | None = None,
        val_fraction: float = 0.2,
        test_samples_per_class: int | None = None,
        batch_size: int | None = None,
        seed: int = 42,
        device_cache_mb: float = 2048.0,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, device_cache_mb=device_cache_mb)
        self.save_hyperparameters()
        _check_int("samples_per_class", samples_per_class, 1)
        _check_int("seq_len", seq_len, 1)
        _check_int("num_features", num_features, 1)
        if test_samples_per_class is not None:
            _check_int("test_samples_per_class", test_samples_per_class, 1)
        if isinstance(val_fraction, bool) or not 0.0 < float(val_fraction) < 1.0:
            raise UserInputError(f"data.val_fraction must be a number in (0, 1); got {val_fraction!r}")
        self.task = GaussianTask.from_arguments(means, num_features, std, phi, class_priors)
        self.samples_per_class = samples_per_class
        self.seq_len = seq_len
        self.num_features = num_features
        self.num_classes = self.task.num_classes
        self.label_names = [str(k) for k in range(self.num_classes)]
        self.val_fraction = float(val_fraction)
        self.test_samples_per_class = test_samples_per_class or samples_per_class
        pool_counts = self.task.class_counts(samples_per_class * self.num_classes)
        pool = int(pool_counts.sum())
        val_size = int(np.ceil(pool * self.val_fraction))
        if pool_counts.min() < 2 or val_size < self.num_classes or pool - val_size < self.num_classes:
            raise UserInputError(
                f"data.samples_per_class={samples_per_class} with data.val_fraction={val_fraction} is too few "
                f"for a stratified split: every class needs at least one sequence in train and in val"
            )

    def make_splits(self) -> tuple[SequenceSplit, SequenceSplit, SequenceSplit]:
        """Draw train + val, split them stratified, and draw the independent test set."""
        from sklearn.model_selection import train_test_split  # here: file runs import this module but split nothing

        pool_seq, test_seq = np.random.SeedSequence(self.seed).spawn(2)
        pool_counts = self.task.class_counts(self.samples_per_class * self.num_classes)
        x, y = self.task.sample(pool_counts, self.seq_len, np.random.default_rng(pool_seq))
        train_idx, val_idx = train_test_split(
            np.arange(len(y)), test_size=self.val_fraction, random_state=self.seed, stratify=y
        )
        x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
        train_i, val_i = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(val_idx))
        train, val = SequenceSplit(x_t[train_i], y_t[train_i]), SequenceSplit(x_t[val_i], y_t[val_i])
        del x, y, x_t, y_t  # the pool is split: free it before the test set is drawn (lower peak memory)
        test_counts = self.task.class_counts(self.test_samples_per_class * self.num_classes)
        x_test, y_test = self.task.sample(test_counts, self.seq_len, np.random.default_rng(test_seq))
        return train, val, SequenceSplit(torch.from_numpy(x_test), torch.from_numpy(y_test))

    def bayes_accuracy(self) -> float:
        """Accuracy of the exact likelihood classifier (true parameters and priors) on the test split."""
        self.setup("test")
        assert self.test_split is not None
        predicted = self.task.bayes_predict(self.test_split.x.numpy())
        return float((predicted == self.test_split.y.numpy()).mean())


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserInputError(f"data.{name} must be an integer >= {minimum}; got {value!r}")
