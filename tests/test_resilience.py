"""Crashes cost at most the work since the last checkpoint, and a resumed run is the run that would have happened."""

from __future__ import annotations

import os
import pickle
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import REPO, script_env
from kill_driver import run_forked
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bigru_lightning.cli import main

# 10 epochs of 4 steps, two GRU layers with dropout: every source of randomness is in play. A checkpoint
# every 2 steps: one in the middle of each epoch, one at each epoch's last step (before its validation).
EPOCHS, STEPS_PER_EPOCH = 10, 4
RUN = [
    "--trainer.max_epochs",
    str(EPOCHS),
    "--model.num_layers",
    "2",
    "--model.dropout",
    "0.2",
    "--model.hidden_size",
    "8",
    "--data.samples_per_class",
    "40",  # 64 training sequences: 4 batches of 16
    "--data.batch_size",
    "16",
    "--checkpoint.every_n_train_steps",
    "2",
    "--trainer.enable_model_summary",
    "false",
]
LAST = "lightning_logs/version_0/checkpoints/last.ckpt"
EPOCH_LINE = re.compile(r"^Epoch \[(\d+)/\d+\], .*$", re.M)
LOGGED = ("train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc", "test/f1", "test/auroc")


@dataclass
class Run:
    """What a run left behind: its epoch lines (by epoch), TensorBoard scalars and final weights."""

    epoch_lines: dict[int, set[str]]
    scalars: dict[str, list[tuple[int, float]]]
    weights: dict[str, torch.Tensor]


def _read_run(folder: Path, outputs: list[str]) -> Run:
    lines: dict[int, set[str]] = {}
    for output in outputs:
        for match in EPOCH_LINE.finditer(output):
            lines.setdefault(int(match.group(1)), set()).add(match.group(0))
    events = EventAccumulator(str(folder / "lightning_logs/version_0"))
    events.Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in LOGGED}
    return Run(lines, scalars, _weights(folder / LAST))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _launch(folder: Path, moment: str, extra: list[str] = []) -> tuple[int, str]:  # noqa: B006
    output = folder / f"output-{len(list(folder.glob('output-*')))}.txt"
    code = run_forked(folder, moment, [*RUN, *extra], output)
    return code, output.read_text()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The uninterrupted run."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    code, output = _launch(folder, "none")
    assert code == 0, output[-3000:]
    run = _read_run(folder, [output])
    assert sorted(run.epoch_lines) == list(range(1, EPOCHS + 1))
    assert all(len(lines) == 1 for lines in run.epoch_lines.values())
    assert all(len(run.scalars[tag]) == EPOCHS for tag in LOGGED[:4])
    return run


def _assert_same_run(resumed: Run, reference: Run) -> None:
    """Every epoch line, every logged scalar and every weight equal to the uninterrupted run's."""
    assert resumed.epoch_lines == reference.epoch_lines  # each epoch printed, and only ever its true line
    for tag in LOGGED:
        assert resumed.scalars[tag] == reference.scalars[tag], tag
    assert resumed.weights.keys() == reference.weights.keys()
    for key in reference.weights:
        assert torch.equal(resumed.weights[key], reference.weights[key]), key


# Where a kill can land, each drawn again and again: inside a training step, inside validation,
# right after a mid-epoch checkpoint, right after the checkpoint of an epoch's last step.
# (A kill lands at the n-th such moment of a launch, n drawn from the range.)
KILL_KINDS = {"train-step": (1, 4), "validation": (1, 1), "after-mid-save": (1, 1), "after-end-save": (1, 1)}


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_run(tmp_path: Path, reference: Run) -> None:
    rng = random.Random(2024)  # fixed: the same kill moments on every run of the test
    plan = [kind for kind in KILL_KINDS for _ in range(3)]
    rng.shuffle(plan)
    plan.insert(0, "after-mid-save")  # first a checkpoint: a kill before any would make a fresh run (version_1)
    outputs: list[str] = []
    kills: list[str] = []
    resume: list[str] = []
    for kind in plan:
        low, high = KILL_KINDS[kind]
        moment = f"{kind}:{rng.randint(low, high)}"
        code, output = _launch(tmp_path, moment, resume)
        outputs.append(output)
        if code == 0:
            break  # finished before the kill moment came
        assert code == -signal.SIGKILL, output[-3000:]
        kills.append(moment)
        _weights(tmp_path / LAST)  # the last.ckpt left behind is whole: it loads
        resume = ["--ckpt_path", "last"]
    else:
        code, output = _launch(tmp_path, "none", resume)
        outputs.append(output)
        assert code == 0, output[-3000:]
    assert len(kills) >= 11, kills
    for kind in KILL_KINDS:
        assert sum(moment.startswith(kind) for moment in kills) >= 2, kills
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]  # same run folder
    assert not list((tmp_path / "lightning_logs/version_0/checkpoints").glob(".*.tmp"))
    _assert_same_run(_read_run(tmp_path, outputs), reference)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_write_last_ckpt_and_resume_exactly(tmp_path: Path, reference: Run, signum: int) -> None:
    """Ctrl-C goes through Lightning's SIGTERM handling (a public behaviour): this pins it."""
    log = tmp_path / "stopped.txt"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "fit.py"), *RUN],
        cwd=tmp_path,
        # One torch thread, as the reference and the resumed run (run_forked): on some CPUs one and two
        # threads sum in other orders, and the weights then differ in the last bits.
        env={**script_env(), "OMP_NUM_THREADS": "1"},
        stdout=log.open("w"),
        stderr=subprocess.PIPE,
        text=True,
    )
    while "Epoch [1/" not in log.read_text():
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 143, err[-2000:]
    assert "Interrupted: last.ckpt written" in err
    assert "Traceback" not in err
    step = torch.load(tmp_path / LAST, map_location="cpu", weights_only=True)["global_step"]
    assert 0 < step < EPOCHS * STEPS_PER_EPOCH  # written at the step where it stopped
    code, output = _launch(tmp_path, "none", ["--ckpt_path", "last"])
    assert code == 0, output[-3000:]
    resumed = _read_run(tmp_path, [log.read_text(), output])
    assert resumed.weights.keys() == reference.weights.keys()
    for key in reference.weights:
        assert torch.equal(resumed.weights[key], reference.weights[key]), key
    for tag in LOGGED:
        assert resumed.scalars[tag] == reference.scalars[tag], tag


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


def test_same_config_and_seed_give_identical_metrics(in_tmp: Path) -> None:
    args = ["--trainer.max_epochs", "3", "--model.dropout", "0.2", "--model.num_layers", "2", "--data.batch_size", "16"]
    first = main(args)
    second = main(args)
    assert first == second
    first_weights = _weights(in_tmp / "lightning_logs/version_0/checkpoints/last.ckpt")
    second_weights = _weights(in_tmp / "lightning_logs/version_1/checkpoints/last.ckpt")
    assert first_weights.keys() == second_weights.keys()
    assert all(torch.equal(first_weights[key], second_weights[key]) for key in first_weights)
