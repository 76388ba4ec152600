"""scripts/benchmark.py at tiny sizes: it runs every variant and reports the ratios (no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bigru_lightning.benchmark import main

TINY = ["--num_samples", "400", "--batch_size", "64", "--hidden_size", "4", "--epochs", "1", "--repeats", "1"]


def test_benchmark_json_has_the_ratios(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--json", *TINY])  # in-process: scripts/benchmark.py only calls this main
    result = json.loads(capsys.readouterr().out)  # the whole of stdout is one JSON object
    for key in ("lightning_vs_plain", "lightning_vs_dataloader", "loader_vs_dataloader"):
        assert result[key] > 0
    assert set(result["samples_per_s"]) == {"plain", "lightning", "lightning_dataloader"}
    assert all(v > 0 for v in result["samples_per_s"].values())
    assert result["train_samples_per_epoch"] == 320
    assert list(in_tmp.iterdir()) == []  # the Trainer's logs went to a temporary folder


def test_benchmark_refuses_a_missing_gpu_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exit_info:
        main(["--accelerator", "gpu", *TINY])
    assert exit_info.value.code == 2
    assert "--accelerator gpu" in capsys.readouterr().err
