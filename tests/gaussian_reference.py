"""An independent reference for the Gaussian tasks: written from the model definition, not from the code.

Nothing here imports ``bigru_lightning``. A class ``k`` is, per feature ``f``, a stationary Gaussian AR(1)
process: the sequence ``x[:, f]`` is multivariate normal with mean ``means[k, f]`` at every step and
covariance ``std_k^2 * phi_k^|i - j|``; features are independent. Densities come from
``scipy.stats.multivariate_normal`` (a Cholesky factorisation of the full T x T covariance), so they share
no formula with the code's recursive AR(1) likelihood.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import integrate, special, stats


def ar1_covariance(std: float, phi: float, seq_len: int) -> np.ndarray:
    """The T x T covariance of a stationary AR(1) process with marginal std ``std``."""
    steps = np.arange(seq_len)
    return std**2 * phi ** np.abs(steps[:, None] - steps[None, :])


def log_likelihoods(x: np.ndarray, means: np.ndarray, stds: np.ndarray, phis: np.ndarray) -> np.ndarray:
    """log p(x | k) for every sequence of ``x`` (N, T, F) and class k, shape (N, K), with scipy's MVN density."""
    x64 = np.asarray(x, dtype=np.float64)
    seq_len, num_features = x64.shape[1], x64.shape[2]
    out = np.zeros((x64.shape[0], len(stds)))
    for k, (std, phi) in enumerate(zip(stds, phis, strict=True)):
        cov = ar1_covariance(float(std), float(phi), seq_len)
        for f in range(num_features):
            density = stats.multivariate_normal(mean=np.full(seq_len, means[k, f]), cov=cov)
            out[:, k] += density.logpdf(x64[:, :, f])
    return out


def posteriors(x: np.ndarray, means: np.ndarray, stds: np.ndarray, phis: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """p(k | x) for every sequence, shape (N, K): Bayes' rule on the MVN densities and the priors."""
    joint = log_likelihoods(x, means, stds, phis) + np.log(priors)
    return np.exp(joint - special.logsumexp(joint, axis=1, keepdims=True))


def sample(
    counts: list[int], seq_len: int, means: np.ndarray, stds: np.ndarray, phis: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``counts[k]`` sequences of class k from the full multivariate normal (not by recursion)."""
    xs, ys = [], []
    num_features = means.shape[1]
    for k, count in enumerate(counts):
        chol = np.linalg.cholesky(ar1_covariance(float(stds[k]), float(phis[k]), seq_len))
        noise = rng.standard_normal((count, num_features, seq_len))
        x = np.einsum("ts,nfs->ntf", chol, noise) + means[k]
        xs.append(x)
        ys.append(np.full(count, k))
    return np.concatenate(xs), np.concatenate(ys)


def _probability_quadratic_form_exceeds(weights: np.ndarray, threshold: float) -> float:
    """P(sum_i w_i z_i^2 > c) for independent standard normals z_i (Imhof, 1961), by numerical integration."""

    def integrand(u: float) -> float:
        theta = 0.5 * np.sum(np.arctan(weights * u)) - 0.5 * threshold * u
        rho = np.prod((1.0 + (weights * u) ** 2) ** 0.25)
        return math.sin(theta) / (u * rho)

    value, _error = integrate.quad(integrand, 0.0, np.inf, limit=500, epsabs=1e-10)
    return 0.5 + value / math.pi


def bayes_optimum_zero_mean(cov0: np.ndarray, cov1: np.ndarray, priors: tuple[float, float] = (0.5, 0.5)) -> float:
    """The exact expected accuracy of the Bayes classifier between N(0, cov0) and N(0, cov1).

    The classifier picks class 1 when x' A x > c, with A = (cov0^-1 - cov1^-1) / 2 and
    c = (log|cov1| - log|cov0|) / 2 - log(pi1 / pi0). Under class k, x = L_k z and x' A x is a weighted
    sum of independent chi-square(1) variables with the eigenvalues of L_k' A L_k as weights, whose tail
    is computed with Imhof's inversion formula.
    """
    a = 0.5 * (np.linalg.inv(cov0) - np.linalg.inv(cov1))
    c = 0.5 * (np.linalg.slogdet(cov1)[1] - np.linalg.slogdet(cov0)[1]) - math.log(priors[1] / priors[0])
    exceed = []
    for cov in (cov0, cov1):
        chol = np.linalg.cholesky(cov)
        exceed.append(_probability_quadratic_form_exceeds(np.linalg.eigvalsh(chol.T @ a @ chol), c))
    return priors[0] * (1.0 - exceed[0]) + priors[1] * exceed[1]


def normal_cdf(z: float) -> float:
    """Phi(z), the standard normal distribution function."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def two_class_optimum(init_args: dict[str, Any]) -> float:
    """The expected Bayes-optimal accuracy of a two-class ``GaussianDataModule`` config with equal priors.

    Means that differ, i.i.d. steps and a common std: Phi(|mu0 - mu1| sqrt(T F) / (2 std)) (the oracle
    thresholds the sequence mean). Equal zero means, one feature: Imhof's integral for the quadratic form.
    """
    means, seq_len = init_args["means"], int(init_args.get("seq_len", 20))
    num_features, std = int(init_args.get("num_features", 1)), float(init_args.get("std", 1.0))
    phi = init_args.get("phi", 0.0)
    phis = list(phi) if isinstance(phi, list) else [phi, phi]
    if len(means) != 2 or init_args.get("class_priors") is not None:
        raise ValueError("two classes with equal priors only")
    if phis == [0.0, 0.0]:
        return normal_cdf(abs(means[0] - means[1]) * math.sqrt(seq_len * num_features) / (2 * std))
    if means == [0.0, 0.0] and num_features == 1:
        return bayes_optimum_zero_mean(ar1_covariance(std, phis[0], seq_len), ar1_covariance(std, phis[1], seq_len))
    raise ValueError("no reference for this task")
