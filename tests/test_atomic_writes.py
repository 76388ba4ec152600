"""Checkpoint writes are atomic the way it matters in life: a process killed in the middle of a write.

Each test kills a real process with SIGKILL while a checkpoint is being written (half of its bytes on
disk), then checks that the previous checkpoint still loads with its old content, that no torn or
temporary file is left under a checkpoint's name, and that a resumed run goes on from the previous one.
A writer that writes straight into the target file fails every test here.
"""

from __future__ import annotations

import io
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import script_env

from bigru_lightning.cli import main
from bigru_lightning.resilience import AtomicCheckpointIO

REAL_SAVE = torch.save

# Replaces torch.save in a child process: the call number ``DIE_ON_CALL`` writes the first half of the
# checkpoint's bytes to wherever the checkpoint goes (a path or an open file), pushes them to disk and
# SIGKILLs its own process, so nothing after it runs: no exception handler, no clean-up, no rename.
DYING_SAVE = """
import io, os, signal, torch
_real_save = torch.save
_calls = [0]
def _dies_half_way(obj, f, *args, **kwargs):
    _calls[0] += 1
    if _calls[0] < DIE_ON_CALL:
        return _real_save(obj, f, *args, **kwargs)
    buffer = io.BytesIO()
    _real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    stream = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f
    stream.write(data[: len(data) // 2])
    stream.flush()
    os.fsync(stream.fileno())
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = _dies_half_way
"""


def _run_child(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _forked(work: Callable[[int], None]) -> tuple[int, int]:
    """Run ``work(progress_fd)`` in a forked child (no import cost); return its pid and the pipe's read end.

    The child must not compute with torch (a forked OpenMP pool can hang): tensors are made before the fork.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        os.close(read_end)
        try:
            work(write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    return pid, read_end


def _killed_by_sigkill(pid: int) -> bool:
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _dies_half_way(obj: object, f: Any, *args: Any, **kwargs: Any) -> None:
    """The in-process twin of ``DYING_SAVE``: half of the bytes reach the disk, then SIGKILL."""
    buffer = io.BytesIO()
    REAL_SAVE(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    stream = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f  # noqa: SIM115 (a killed process never closes)
    stream.write(data[: len(data) // 2])
    stream.flush()
    os.fsync(stream.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def _strays(folder: Path, expected: set[str]) -> list[str]:
    """Files under ``folder`` that a checkpoint loader could take for a checkpoint, besides ``expected``."""
    return sorted(p.name for p in folder.iterdir() if p.name not in expected and p.name.endswith(".ckpt"))


def test_sigkill_half_way_through_a_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    ones, twos = torch.full((200_000,), 1.0), torch.full((200_000,), 2.0)

    def work(progress: int) -> None:
        writer = AtomicCheckpointIO()
        writer.save_checkpoint({"version": 1, "w": ones}, target)
        torch.save = _dies_half_way  # only in the child
        writer.save_checkpoint({"version": 2, "w": twos}, target)
        os.write(progress, b"not killed")

    pid, progress = _forked(work)
    assert _killed_by_sigkill(pid)
    assert os.read(progress, 100) == b""
    os.close(progress)
    previous = torch.load(target, weights_only=True)  # whole: it loads, with the old content
    assert previous["version"] == 1 and torch.equal(previous["w"], ones)
    assert _strays(tmp_path, {"last.ckpt"}) == []  # the half-written file is not under a checkpoint's name


def test_sigkill_at_random_moments_while_writing_leaves_a_whole_checkpoint(tmp_path: Path) -> None:
    """A child rewrites one 8 MB checkpoint in a loop; it is killed from outside at random moments."""
    target = tmp_path / "last.ckpt"
    fills = [torch.full((2_000_000,), float(parity)) for parity in (0, 1)]

    def work(progress: int) -> None:
        writer = AtomicCheckpointIO()
        for version in range(1, 100_000):
            writer.save_checkpoint({"version": version, "w": fills[version % 2]}, target)
            os.write(progress, b".")

    rng = random.Random(7)
    for _kill in range(5):
        pid, progress = _forked(work)
        if not select.select([progress], [], [], 120)[0]:  # a hung child fails the test instead of hanging it
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the writing child made no progress in 120 s")
        assert os.read(progress, 1) == b"."  # one write finished
        time.sleep(rng.uniform(0.0, 0.2))
        os.kill(pid, signal.SIGKILL)
        assert _killed_by_sigkill(pid)
        os.close(progress)
        checkpoint = torch.load(target, weights_only=True)
        version = checkpoint["version"]
        assert version >= 1 and torch.equal(checkpoint["w"], fills[version % 2])
        assert _strays(tmp_path, {"last.ckpt"}) == []


TINY = [
    "--trainer.max_epochs",
    "3",
    "--model.hidden_size",
    "8",
    "--data.batch_size",
    "40",
    "--trainer.enable_model_summary",
    "false",
]


def test_fit_killed_inside_a_checkpoint_write_resumes_from_the_previous_one(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A training run dies half-way through its first checkpoint write of epoch 2; ``--ckpt_path last`` resumes.

    Epoch 1 writes two checkpoints (the best one and ``last.ckpt``); the third write dies half-way.
    """
    result = _run_child(
        f"""
        DIE_ON_CALL = 3
        {textwrap.indent(DYING_SAVE, " " * 8).strip()}
        from bigru_lightning.cli import main
        main({TINY!r})
        print("not killed")
        """,
        in_tmp,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    checkpoints = in_tmp / "lightning_logs/version_0/checkpoints"
    names = sorted(p.name for p in checkpoints.iterdir() if p.name.endswith(".ckpt"))
    assert names == ["best-epoch=00.ckpt", "last.ckpt"], names  # nothing torn under a checkpoint's name
    for name in names:
        assert torch.load(checkpoints / name, weights_only=True)["epoch"] == 0  # whole, from epoch 1
    capsys.readouterr()
    main([*TINY, "--ckpt_path", "last"])
    epoch_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch [")]
    assert [line.split(",")[0] for line in epoch_lines] == ["Epoch [2/3]", "Epoch [3/3]"]
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 2
    assert sorted(p.name for p in (in_tmp / "lightning_logs").iterdir()) == ["version_0"]
    assert [p.name for p in checkpoints.iterdir() if not p.name.endswith(".ckpt")] == []  # the torn temp file is gone
