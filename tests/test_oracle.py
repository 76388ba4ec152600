"""The Bayes oracle against an independent calculation (tests/gaussian_reference.py: scipy's MVN densities).

The code computes likelihoods by the AR(1) recursion; the reference uses the full T x T covariance.
Unequal priors, per-class std and AR(1) coefficients (also negative), several features.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from conftest import REPO
from gaussian_reference import ar1_covariance, log_likelihoods, posteriors, sample, two_class_optimum

from bigru_lightning.data import GaussianDataModule, GaussianTask

# Three classes, two features; the means are close and the priors far apart, so the priors decide often.
MEANS = [[0.0, 0.3], 0.2, -0.1]
STDS = [1.0, 1.3, 0.8]
PHIS = [0.0, 0.6, -0.4]
PRIORS = [0.75, 0.2, 0.05]
SEQ_LEN = 8


@pytest.fixture(scope="module")
def task() -> GaussianTask:
    return GaussianTask.from_arguments(MEANS, 2, STDS, PHIS, PRIORS)


@pytest.fixture(scope="module")
def sequences(task: GaussianTask) -> tuple[np.ndarray, np.ndarray]:
    """300 sequences drawn by the reference's own sampler (a Cholesky factor, not the AR recursion)."""
    return sample([100, 100, 100], SEQ_LEN, task.means, task.stds, task.phis, np.random.default_rng(3))


def test_log_likelihoods_match_scipy_multivariate_normal(
    task: GaussianTask, sequences: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = sequences
    expected = log_likelihoods(x, task.means, task.stds, task.phis)
    np.testing.assert_allclose(task.log_likelihoods(x), expected, rtol=1e-10, atol=1e-9)


def test_bayes_predictions_are_the_argmax_of_the_independent_posterior(
    task: GaussianTask, sequences: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = sequences
    posterior = posteriors(x, task.means, task.stds, task.phis, np.array(PRIORS))
    np.testing.assert_allclose(posterior.sum(axis=1), 1.0)
    expected = posterior.argmax(axis=1)
    assert np.array_equal(task.bayes_predict(x), expected)
    assert np.array_equal(task.bayes_predict(x, chunk=7), expected)  # chunking changes nothing
    # the priors matter on this data: a likelihood-only classifier decides differently on many sequences
    likelihood_only = log_likelihoods(x, task.means, task.stds, task.phis).argmax(axis=1)
    assert (likelihood_only != expected).sum() >= 20


def test_code_sampler_draws_the_stated_process(task: GaussianTask) -> None:
    """The code's sequences have the reference's mean log-density: E[log p] = -(T log 2 pi e + log|cov|) / 2."""
    counts = np.array([1500, 1500, 1500])
    x, y = task.sample(counts, SEQ_LEN, np.random.default_rng(11))
    assert np.array_equal(np.bincount(y), counts)
    for k in range(3):
        own = log_likelihoods(x[y == k], task.means[k : k + 1], task.stds[k : k + 1], task.phis[k : k + 1])[:, 0]
        logdet = np.linalg.slogdet(ar1_covariance(STDS[k], PHIS[k], SEQ_LEN))[1]
        # per feature log p = -(T log 2 pi + log|cov| + Q) / 2 with Q ~ chi2(T): mean -(T log 2 pi e + log|cov|) / 2,
        # variance T / 2; two independent features double both
        expected = -(SEQ_LEN * math.log(2 * math.pi * math.e) + logdet)
        standard_error = math.sqrt(SEQ_LEN / len(own))
        assert own.mean() == pytest.approx(expected, abs=4 * standard_error)


def test_datamodule_oracle_accuracy_is_the_independent_one_with_unequal_priors() -> None:
    dm = GaussianDataModule(
        samples_per_class=20,
        seq_len=SEQ_LEN,
        num_features=2,
        means=MEANS,  # type: ignore[arg-type]
        std=STDS,
        phi=PHIS,
        class_priors=PRIORS,
        test_samples_per_class=200,
    )
    dm.setup("test")
    assert dm.test_split is not None
    x, y = dm.test_split.x.numpy(), dm.test_split.y.numpy()
    expected = posteriors(x, dm.task.means, dm.task.stds, dm.task.phis, np.array(PRIORS)).argmax(axis=1)
    assert dm.bayes_accuracy() == pytest.approx(float((expected == y).mean()), abs=1e-12)


# --- The temporal config's optimum, derived without the code (its test set: tests/test_configs.py) ------


def test_temporal_optimum_exact_agrees_with_monte_carlo() -> None:
    """Imhof's exact value against a Monte Carlo estimate from the reference sampler and densities."""
    data = yaml.safe_load((REPO / "configs" / "temporal.yaml").read_text())["data"]["init_args"]
    seq_len, phis = int(data["seq_len"]), np.array(data["phi"], dtype=float)
    means, stds, priors = np.zeros((2, 1)), np.ones(2), np.array([0.5, 0.5])
    n = 20_000
    x, y = sample([n // 2, n // 2], seq_len, means, stds, phis, np.random.default_rng(2026))
    monte_carlo = float((posteriors(x, means, stds, phis, priors).argmax(axis=1) == y).mean())
    exact = two_class_optimum(data)
    standard_error = math.sqrt(exact * (1 - exact) / n)
    assert monte_carlo == pytest.approx(exact, abs=4 * standard_error)
    assert 0.85 < exact < 0.90  # the README's "about 87.5 %"


def test_closed_form_mean_shift_agrees_with_monte_carlo() -> None:
    """Phi(|mu0 - mu1| sqrt(T F) / (2 std)) against a Monte Carlo estimate (two features, std 1.5)."""
    init_args = {"means": [0.1, -0.15], "seq_len": 10, "num_features": 2, "std": 1.5}
    means, stds, phis = np.array([[0.1, 0.1], [-0.15, -0.15]]), np.full(2, 1.5), np.zeros(2)
    n = 20_000
    x, y = sample([n // 2, n // 2], 10, means, stds, phis, np.random.default_rng(5))
    monte_carlo = float((posteriors(x, means, stds, phis, np.array([0.5, 0.5])).argmax(axis=1) == y).mean())
    exact = two_class_optimum(init_args)
    assert monte_carlo == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / n))
