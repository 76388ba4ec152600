"""GPU paths: data held on the device, mixed precision, the benchmark. Skipped without CUDA."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from bigru_lightning.data import GaussianDataModule
from bigru_lightning.module import BiGRUClassifier
from tests.conftest import REPO, script_env

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class _TransferProbe(BiGRUClassifier):
    """Records where each batch is before Lightning's host-to-device step."""

    def __init__(self) -> None:
        super().__init__(hidden_size=8)
        self.devices_before_transfer: list[torch.device] = []

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        self.devices_before_transfer.extend(t.device for t in batch)
        return batch


def _fit(dm: GaussianDataModule, precision: str = "32-true") -> _TransferProbe:
    model = _TransferProbe()
    trainer = pl.Trainer(
        accelerator="gpu",
        devices=1,
        max_epochs=2,
        precision=precision,  # type: ignore[arg-type]
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(model, datamodule=dm)
    return model


def test_data_is_on_the_device_before_any_step(in_tmp: Path) -> None:
    dm = GaussianDataModule(samples_per_class=200, batch_size=32)
    model = _fit(dm)
    assert model.devices_before_transfer and all(d.type == "cuda" for d in model.devices_before_transfer)
    assert dm.train_split is not None and dm.train_split.x.device.type == "cpu"  # host copy untouched


def test_over_the_bound_batches_are_copied_per_step(in_tmp: Path) -> None:
    model = _fit(GaussianDataModule(samples_per_class=200, batch_size=32, device_cache_mb=0.001))
    assert model.devices_before_transfer and all(d.type == "cpu" for d in model.devices_before_transfer)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_trains_and_tests(in_tmp: Path, precision: str) -> None:
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    command = [
        sys.executable, str(REPO / "scripts" / "fit.py"),
        "--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.precision", precision,
        "--data.samples_per_class", "500", "--data.batch_size", "64", "--trainer.max_epochs", "3",
    ]  # fmt: skip
    run = subprocess.run(command, env=script_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    accuracy = float(run.stdout.split("Test Accuracy: ")[1].split("%")[0])
    assert accuracy > 95.0  # means +1/-1 over 20 steps: nearly separable


def test_benchmark_on_gpu_reports_ratios(in_tmp: Path) -> None:
    command = [
        sys.executable, str(REPO / "benchmarks" / "throughput.py"), "--json", "--accelerator", "gpu",
        "--precision", "bf16-mixed", "--num_samples", "4000", "--epochs", "1", "--rounds", "1", "--model_samples", "0",
    ]  # fmt: skip
    run = subprocess.run(command, env=script_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["device"].startswith("cuda")
    for key in ("lightning_vs_plain", "lightning_vs_dataloader", "loader_vs_dataloader"):
        assert result[key]["median"] > 0
