"""Gaussian sequence classes: each class is a stationary Gaussian AR(1) process per feature.

Class ``k`` draws every feature ``f`` of a sequence independently as
``x_t = mu[k, f] + phi[k] * (x_{t-1} - mu[k, f]) + std[k] * sqrt(1 - phi[k]^2) * e_t`` with
``x_0 ~ N(mu[k, f], std[k]^2)``, so every step is marginally ``N(mu, std^2)`` and ``phi = 0`` gives
i.i.d. steps (the tutorial's data). Because the process is known, the exact likelihood of a sequence
under each class is computable, and so is the Bayes-optimal classifier (:meth:`GaussianTask.bayes_predict`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bigru_lightning.errors import UserInputError


@dataclass(frozen=True)
class GaussianTask:
    """The parameters of K Gaussian AR(1) sequence classes.

    Attributes:
        means: Per-class, per-feature means, shape (K, F).
        stds: Per-class marginal standard deviations, shape (K,).
        phis: Per-class AR(1) coefficients in (-1, 1), shape (K,).
        priors: Class probabilities summing to 1, shape (K,).
    """

    means: np.ndarray
    stds: np.ndarray
    phis: np.ndarray
    priors: np.ndarray

    @property
    def num_classes(self) -> int:
        """Number of classes K."""
        return int(self.means.shape[0])

    @property
    def num_features(self) -> int:
        """Number of features F per time step."""
        return int(self.means.shape[1])

    @classmethod
    def from_arguments(
        cls,
        means: list[float] | list[list[float]] | list[float | list[float]],
        num_features: int,
        std: float | list[float],
        phi: float | list[float],
        class_priors: list[float] | None,
        prefix: str = "data.",
    ) -> GaussianTask:
        """Build and validate a task from the DataModule's arguments (messages name ``prefix`` + key)."""
        if not isinstance(means, (list, tuple)) or len(means) < 2:
            raise UserInputError(f"{prefix}means must list one mean per class, at least two classes; got {means!r}")
        rows = []
        for k, mean in enumerate(means):
            row = np.asarray(mean, dtype=np.float64).reshape(-1)
            if row.size == 1:
                row = np.full(num_features, float(row[0]))
            if row.size != num_features:
                raise UserInputError(
                    f"{prefix}means[{k}] has {row.size} values; give a scalar or one value per feature "
                    f"({prefix}num_features={num_features})"
                )
            rows.append(row)
        mean_matrix = np.stack(rows)
        if not np.all(np.isfinite(mean_matrix)):
            raise UserInputError(f"{prefix}means must be finite numbers; got {means!r}")
        num_classes = len(rows)
        stds = _per_class(std, num_classes, f"{prefix}std")
        if not np.all(np.isfinite(stds)) or np.any(stds <= 0):
            raise UserInputError(f"{prefix}std must be finite and > 0 (one value or one per class); got {std!r}")
        phis = _per_class(phi, num_classes, f"{prefix}phi")
        if not np.all(np.isfinite(phis)) or np.any(np.abs(phis) >= 1):
            raise UserInputError(f"{prefix}phi must lie in (-1, 1) (one value or one per class); got {phi!r}")
        if class_priors is None:
            priors = np.full(num_classes, 1.0 / num_classes)
        else:
            priors = np.asarray(class_priors, dtype=np.float64).reshape(-1)
            if (
                priors.size != num_classes
                or not np.all(np.isfinite(priors))
                or np.any(priors <= 0)
                or abs(priors.sum() - 1.0) > 1e-6
            ):
                raise UserInputError(
                    f"{prefix}class_priors must be {num_classes} positive numbers summing to 1 "
                    f"(one per entry of {prefix}means); got {class_priors!r}"
                )
        return cls(means=mean_matrix, stds=stds, phis=phis, priors=priors)

    def class_counts(self, total: int) -> np.ndarray:
        """Split ``total`` sequences over the classes in proportion to the priors (each class >= 1)."""
        counts = np.floor(self.priors * total + 0.5).astype(np.int64)
        counts = np.maximum(counts, 1)
        return counts

    def sample(self, counts: np.ndarray, seq_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``counts[k]`` sequences of class ``k``, in class order.

        Returns:
            ``x`` of shape (N, seq_len, F), float32, and ``y`` of shape (N,), int64.
        """
        sizes = [int(count) for count in counts]
        # Drawn straight into the output (no per-class arrays to concatenate), in float32, in place.
        x = np.empty((sum(sizes), seq_len, self.num_features), dtype=np.float32)
        y = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
        start = 0
        for k, count in enumerate(sizes):
            block = x[start : start + count]
            start += count
            rng.standard_normal(block.shape, dtype=np.float32, out=block)
            mean = self.means[k].astype(np.float32)
            std = np.float32(self.stds[k])
            phi = float(self.phis[k])
            if phi == 0.0:
                block *= std
                block += mean
                continue
            innovation_scale = np.float32(math.sqrt(1.0 - phi * phi))
            deviation = block[:, 0] * std
            block[:, 0] = deviation + mean
            for t in range(1, seq_len):
                deviation = np.float32(phi) * deviation + innovation_scale * std * block[:, t]
                block[:, t] = deviation + mean
        return x, y

    def log_likelihoods(self, x: np.ndarray) -> np.ndarray:
        """Exact log-likelihood of each sequence under each class, shape (N, K).

        Args:
            x: Sequences of shape (N, T, F) on the raw (unstandardised) scale.
        """
        x64 = np.asarray(x, dtype=np.float64)
        out = np.empty((x64.shape[0], self.num_classes))
        for k in range(self.num_classes):
            deviation = x64 - self.means[k]
            var = self.stds[k] ** 2
            phi = self.phis[k]
            innovation_var = var * (1.0 - phi * phi)
            first = deviation[:, 0]
            rest = deviation[:, 1:] - phi * deviation[:, :-1]
            ll = -0.5 * (first**2 / var + math.log(2 * math.pi * var)).sum(axis=1)
            ll += -0.5 * (rest**2 / innovation_var + math.log(2 * math.pi * innovation_var)).sum(axis=(1, 2))
            out[:, k] = ll
        return out

    def bayes_predict(self, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """The Bayes-optimal class for each sequence: argmax of log-likelihood plus log-prior.

        Works through ``chunk`` sequences at a time, so the float64 temporaries stay small (a few MiB for
        20 x 1 sequences) however large the set.
        """
        log_prior = np.log(self.priors)
        return np.concatenate(
            [np.argmax(self.log_likelihoods(x[i : i + chunk]) + log_prior, axis=1) for i in range(0, len(x), chunk)]
            or [np.empty(0, dtype=np.int64)]
        )


def _per_class(value: float | list[float], num_classes: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size == 1:
        return np.full(num_classes, float(array[0]))
    if array.size != num_classes:
        raise UserInputError(f"{name} must be one number or one per class ({num_classes}); got {value!r}")
    return array
