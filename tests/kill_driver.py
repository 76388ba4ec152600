"""Run ``scripts/fit.py``'s ``main`` and SIGKILL this process at a chosen moment (for tests/test_resilience.py).

Usage: ``python tests/kill_driver.py MOMENT -- FIT_ARGS...`` where MOMENT is one of

- ``none``: run to the end;
- ``after-mid-save:N``: right after the N-th mid-epoch checkpoint this process writes (``last.ckpt``
  renamed into place, after the other files of that step);
- ``after-end-save:N``: the same for end-of-epoch checkpoints (those of an epoch's last step included);
- ``train-step:N``: at the start of the N-th training step this process runs;
- ``validation:N``: in the middle of the N-th validation loop (after its first batch);
- ``timer:SECONDS``: SECONDS after training starts.

SIGKILL gives the process no chance to clean up or flush, like a preempted machine.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from bigru_lightning import cli, resilience


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(Callback):
    """SIGKILL the process at the ``count``-th occurrence of the training moment ``kind``."""

    def __init__(self, kind: str, count: float) -> None:
        self.kind, self.count, self.seen = kind, count, 0
        self.trainer: pl.Trainer | None = None

    def tick(self, kind: str) -> None:
        """One more occurrence of ``kind``; die if it is the chosen one."""
        if kind == self.kind:
            self.seen += 1
            if self.seen == self.count:
                _die()

    def saved(self, path: str) -> None:
        """A checkpoint file was written: count it if it completes a save (``last.ckpt`` comes last)."""
        if self.trainer is None or Path(path).name != "last.ckpt":
            return
        at_epoch_end = self.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        self.tick("after-end-save" if at_epoch_end else "after-mid-save")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trainer = trainer
        if self.kind == "timer":
            timer = threading.Timer(self.count, _die)
            timer.daemon = True
            timer.start()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.tick("train-step")

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if not trainer.sanity_checking and args[-1] == 0:  # batch_idx 0: inside the loop, before its end
            self.tick("validation")


def install_killer(moment: str) -> None:
    """Arrange for this process to SIGKILL itself at ``moment`` (see the module docstring)."""
    kind, _, count = moment.partition(":")
    if kind == "none":
        return
    killer = KillAt(kind, float(count) if kind == "timer" else int(count))
    save = resilience.AtomicCheckpointIO.save_checkpoint
    instantiated = cli.BiGRUCLI.after_instantiate_classes

    def save_then_maybe_die(self: Any, checkpoint: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        save(self, checkpoint, path, *args, **kwargs)
        killer.saved(str(path))

    def add_killer(self: cli.BiGRUCLI) -> None:
        instantiated(self)
        self.trainer.callbacks.append(killer)  # type: ignore[attr-defined]

    resilience.AtomicCheckpointIO.save_checkpoint = save_then_maybe_die  # type: ignore[method-assign]
    cli.BiGRUCLI.after_instantiate_classes = add_killer  # type: ignore[method-assign]


def run_forked(folder: Path, moment: str, fit_args: list[str], output: Path) -> int:
    """Run the fit command in a forked copy of this process, in ``folder``; its stdout and stderr go to ``output``.

    Forking skips the imports (seconds each on a loaded machine). Returns the exit status, or minus
    the number of the signal that ended it (-9: killed as planned).
    """
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            torch.set_num_threads(1)
            os.chdir(folder)
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            install_killer(moment)
            cli.main(fit_args)
            status = 0
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status)


def main() -> None:
    """``python tests/kill_driver.py MOMENT -- FIT_ARGS...``"""
    moment, separator, *fit_args = sys.argv[1:]
    assert separator == "--"
    install_killer(moment)
    cli.main(fit_args)


if __name__ == "__main__":
    main()
