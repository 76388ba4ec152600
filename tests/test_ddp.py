"""DDP on CPU (gloo, 2 processes) through scripts/fit.py: shards, coverage and synced validation metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bigru_lightning.data import GaussianDataModule, TensorBatcher
from tests.conftest import REPO, script_env

PROBE = '[{"class_path": "tests.batch_probe.BatchProbe", "init_args": {"out_dir": "probe"}}]'


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_ddp_two_cpu_processes(in_tmp: Path) -> None:
    command = [
        sys.executable,
        str(REPO / "scripts" / "fit.py"),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "2",
        "--trainer.strategy", "ddp",
        "--data.samples_per_class", "60",
        "--data.batch_size", "16",
        "--model.hidden_size", "8",
        "--trainer.max_epochs", "2",
        "--trainer.callbacks", PROBE,
    ]  # fmt: skip
    run = subprocess.run(command, env=script_env(), capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Epoch [2/2]" in run.stdout and "Test Accuracy:" in run.stdout
    assert run.stdout.count("Test Accuracy:") == 1  # rank 0 prints, rank 1 does not

    records = [json.loads((in_tmp / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in records] == [0, 1] and {r["world_size"] for r in records} == {2}

    dm = GaussianDataModule(samples_per_class=60, batch_size=16)
    dm.setup("fit")
    assert dm.train_split is not None and dm.val_split is not None
    n_train, n_val = len(dm.train_split), len(dm.val_split)  # 96 and 24
    for epoch in ("0", "1"):
        shards = [[i for batch in r["train_ids"][epoch] for i in batch] for r in records]
        # same number of batches on every rank, disjoint shards, every sample exactly once
        assert len(records[0]["train_ids"][epoch]) == len(records[1]["train_ids"][epoch]) == 3
        assert sorted(shards[0] + shards[1]) == list(range(n_train))
        for rank, shard in enumerate(shards):  # each rank's order is the (seed, epoch) permutation's shard
            batcher = TensorBatcher(dm.train_split.tensors(), 16, shuffle=True, seed=42, rank=rank, world_size=2)
            expected = batcher.epoch_indices(int(epoch))
            assert expected is not None and shard == expected.tolist()
        # validation: disjoint halves, and the logged metric is the same on both ranks and equals the
        # loss over the whole validation split (each rank's own half gives a different value)
        val_shards = [r["val_ids"][epoch] for r in records]
        assert sorted(val_shards[0] + val_shards[1]) == list(range(n_val))
        synced = [r["synced"][epoch] for r in records]
        assert synced[0] == synced[1]
        local = [r["val_loss_sum"][epoch] / len(r["val_ids"][epoch]) for r in records]
        assert local[0] != pytest.approx(local[1], abs=1e-6)
        whole = sum(r["val_loss_sum"][epoch] for r in records) / n_val
        assert synced[0]["val/loss"] == pytest.approx(whole, rel=1e-4)
    assert records[0]["train_ids"]["0"] != records[0]["train_ids"]["1"]


def test_multi_node_settings_reach_the_trainer(in_tmp: Path) -> None:
    from bigru_lightning.cli import expand_shorthands, make_cli

    args = ["--num_nodes", "2", "--strategy", "ddp", "--accelerator", "cpu", "--devices", "2"]
    cli = make_cli(expand_shorthands(args))
    trainer = cli.trainer
    assert trainer.num_nodes == 2 and trainer.num_devices == 2 and trainer.world_size == 4
    assert type(trainer.strategy).__name__ == "DDPStrategy"
