"""Mixed precision on CPU: bf16-mixed trains and tests; an unknown precision is a one-line user error."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from bigru_lightning.cli import main

TINY = ["--data.samples_per_class", "40", "--model.hidden_size", "8", "--trainer.max_epochs", "2"]


def test_bf16_mixed_on_cpu_trains_and_tests(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = main(["--trainer.accelerator", "cpu", "--precision", "bf16-mixed", *TINY])
    assert "Test Accuracy:" in capsys.readouterr().out
    assert math.isfinite(metrics["test/loss"]) and 0.0 <= metrics["test/acc"] <= 1.0
    config = yaml.safe_load((in_tmp / "lightning_logs" / "version_0" / "config.yaml").read_text())
    assert config["trainer"]["precision"] == "bf16-mixed"


def test_unknown_precision_is_a_one_line_error(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--precision", "bf17-mixed", *TINY])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "precision" in err and "\n" not in err
    assert not (in_tmp / "lightning_logs").exists()
