"""The shipped configs: each parses, the hard ones test on >= 10,000 sequences and have the stated optimum."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from gaussian_reference import two_class_optimum

from bigru_lightning.cli import main
from bigru_lightning.data import GaussianDataModule

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
HARD = ("hard_mean.yaml", "temporal.yaml")  # configs built around an optimum far from 100 %


def _optimum(name: str) -> float:
    """The config's expected optimum, derived without the code (tests/gaussian_reference.py)."""
    return two_class_optimum(yaml.safe_load((REPO / "configs" / name).read_text())["data"]["init_args"])


def _resolved(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(path), "--print_config"])
    assert exit_info.value.code == 0
    return dict(yaml.safe_load(capsys.readouterr().out))


def test_the_expected_configs_are_shipped() -> None:
    assert {path.name for path in CONFIGS} >= {"seed.yaml", *HARD}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_valid(path: Path, in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _resolved(path, capsys)
    assert config["data"]["class_path"].endswith("GaussianDataModule")
    assert not (in_tmp / "lightning_logs").exists()  # --print_config runs nothing


def test_seed_config_is_the_default_run(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--print_config"])
    defaults = yaml.safe_load(capsys.readouterr().out)
    assert _resolved(REPO / "configs" / "seed.yaml", capsys) == defaults


@pytest.mark.parametrize("name", sorted(HARD))
def test_hard_config_tests_on_10000_sequences_near_its_optimum(
    name: str, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _resolved(REPO / "configs" / name, capsys)["data"]["init_args"]
    assert data["test_samples_per_class"] * len(data["means"]) >= 10_000
    datamodule = GaussianDataModule(**{k: v for k, v in data.items()})
    datamodule.setup("test")
    assert datamodule.test_split is not None and len(datamodule.test_split) >= 10_000
    # the code's oracle on this test set is within 3 standard errors of the independently derived optimum
    optimum = _optimum(name)
    standard_error = math.sqrt(optimum * (1 - optimum) / len(datamodule.test_split))
    assert datamodule.bayes_accuracy() == pytest.approx(optimum, abs=3 * standard_error)


@pytest.mark.parametrize("name", sorted(HARD))
def test_hard_config_runs(name: str, in_tmp: Path) -> None:
    """A very short run of the config (2 batches of train, val and test): it trains, tests and reports the optimum."""
    metrics = main(
        [
            "--config",
            str(REPO / "configs" / name),
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=2",
            "--trainer.limit_test_batches=2",
        ]
    )
    assert "test/acc" in metrics
    assert metrics["test/bayes_acc"] == pytest.approx(_optimum(name), abs=0.015)  # the oracle sees the whole test set
    assert (in_tmp / "lightning_logs/version_0/checkpoints/last.ckpt").is_file()


def test_stated_optima() -> None:
    """README: Phi(0.447) = 67.26 % for hard_mean.yaml; about 87.5 % for temporal.yaml."""
    assert _optimum("hard_mean.yaml") == pytest.approx(0.6726, abs=5e-5)
    assert _optimum("temporal.yaml") == pytest.approx(0.875, abs=0.005)
