"""Crashes cost at most the work since the last checkpoint, and a resumed run is the run that would have happened."""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, script_env
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bigru_lightning.cli import main

# 12 epochs of 5 steps, two GRU layers with dropout: every source of randomness is in play.
STEPS_PER_EPOCH = 5
RUN = [
    "--trainer.max_epochs",
    "12",
    "--model.num_layers",
    "2",
    "--model.dropout",
    "0.3",
    "--model.hidden_size",
    "16",
    "--data.samples_per_class",
    "100",
    "--data.batch_size",
    "32",
    "--trainer.enable_model_summary",
    "false",
]


def _start(folder: Path, extra: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "fit.py"), *RUN, *extra],
        cwd=folder,
        env=script_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_epoch_line(process: subprocess.Popen[str], count: int = 1) -> bool:
    """Read stdout until this process's ``count``-th epoch line; False if the process ended first."""
    assert process.stdout is not None
    seen = 0
    for line in process.stdout:
        if line.startswith("Epoch ["):
            seen += 1
            if seen == count:
                return True
    return False


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _assert_identical(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


MID_EPOCH = ["--checkpoint.every_n_train_steps", "3"]  # 3 does not divide 5: checkpoints inside epochs


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """last.ckpt of uninterrupted runs, per checkpointing mode."""
    paths = {}
    for name, extra in (("per-epoch", []), ("mid-epoch", MID_EPOCH)):
        folder = tmp_path_factory.mktemp(name)
        process = _start(folder, extra)
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
        paths[name] = folder / "lightning_logs/version_0/checkpoints/last.ckpt"
    return paths


@pytest.mark.parametrize("mode", ["per-epoch", "mid-epoch"])
def test_sigkill_at_random_moments_then_resume_is_bitwise_identical(
    tmp_path: Path, reference: dict[str, Path], mode: str
) -> None:
    extra = MID_EPOCH if mode == "mid-epoch" else []
    folder = tmp_path / "killed"
    folder.mkdir()
    rng = random.Random(1234)
    resume: list[str] = []
    kills = 0
    for _attempt in range(12):
        process = _start(folder, extra + resume)
        if kills < 3 and _wait_for_epoch_line(process, rng.randint(1, 2)):
            time.sleep(rng.uniform(0.0, 0.05))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.communicate(timeout=600)
            last = folder / "lightning_logs/version_0/checkpoints/last.ckpt"
            assert last.exists()
            _weights(last)  # the previous last.ckpt is whole: it loads
            resume = ["--ckpt_path", "last"]
            continue
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
        break
    assert kills == 3
    assert sorted(p.name for p in (folder / "lightning_logs").iterdir()) == ["version_0"]  # same run folder
    _assert_identical(folder / "lightning_logs/version_0/checkpoints/last.ckpt", reference[mode])
    leftovers = list((folder / "lightning_logs/version_0/checkpoints").glob(".*.tmp"))
    assert not leftovers
    acc = EventAccumulator(str(folder / "lightning_logs/version_0"))
    acc.Reload()
    steps = [event.step for event in acc.Scalars("train/loss")]
    assert len(steps) == 12 and len(set(steps)) == 12  # continued without duplicated or restarted steps


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_write_last_ckpt_and_resume_exactly(
    tmp_path: Path, reference: dict[str, Path], signum: int
) -> None:
    folder = tmp_path / "stopped"
    folder.mkdir()
    process = _start(folder, [])
    assert _wait_for_epoch_line(process)
    process.send_signal(signum)
    _out, err = process.communicate(timeout=600)
    assert process.returncode == 143, err[-2000:]
    assert "Interrupted: last.ckpt written" in err
    assert "Traceback" not in err
    last = folder / "lightning_logs/version_0/checkpoints/last.ckpt"
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert 0 < step < 12 * STEPS_PER_EPOCH  # written at the step where it stopped
    process = _start(folder, ["--ckpt_path", "last"])
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-2000:]
    _assert_identical(last, reference["per-epoch"])


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.target}",))


def test_checkpoint_with_pickle_payload_is_refused_and_never_runs(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = in_tmp / "pwned"
    evil = in_tmp / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(str(marker))}, evil)
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt_path", str(evil)])
    assert exit_info.value.code == 2
    assert "refused" in capsys.readouterr().err
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(evil, weights_only=True)
    assert not marker.exists()


def test_checkpoint_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bigru_lightning.resilience import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # dies in the middle of writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, target)
    monkeypatch.undo()
    assert torch.equal(torch.load(target, weights_only=True)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_same_config_and_seed_give_identical_metrics(in_tmp: Path) -> None:
    args = ["--trainer.max_epochs", "3", "--model.dropout", "0.2", "--model.num_layers", "2", "--data.batch_size", "16"]
    first = main(args)
    second = main(args)
    assert first == second
    _assert_identical(
        in_tmp / "lightning_logs/version_0/checkpoints/last.ckpt",
        in_tmp / "lightning_logs/version_1/checkpoints/last.ckpt",
    )
