"""Run ``scripts/fit.py``'s ``main`` and SIGKILL this process at a chosen moment (for tests/test_resilience.py).

Usage: ``python tests/kill_driver.py MOMENT -- FIT_ARGS...`` where MOMENT is one of

- ``none``: run to the end;
- ``after-save:N``: right after the N-th checkpoint file this process writes (atomic rename done);
- ``train-step:N``: at the start of the N-th training step this process runs;
- ``validation:N``: in the middle of the N-th validation loop (after its first batch);
- ``timer:SECONDS``: SECONDS after training starts (a random moment, chosen by the test).

SIGKILL gives the process no chance to clean up or flush, like a preempted machine.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from bigru_lightning import cli, resilience


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(Callback):
    """SIGKILL the process at the ``kind``-th occurrence ``count`` of a training moment."""

    def __init__(self, kind: str, count: float) -> None:
        self.kind, self.count, self.seen = kind, count, 0

    def _tick(self, kind: str) -> None:
        if kind == self.kind:
            self.seen += 1
            if self.seen == self.count:
                _die()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.kind == "timer":
            timer = threading.Timer(self.count, _die)
            timer.daemon = True
            timer.start()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._tick("train-step")

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if not trainer.sanity_checking and args[-1] == 0:  # batch_idx 0: inside the loop, not at its end
            self._tick("validation")


def main() -> None:
    moment, separator, *fit_args = sys.argv[1:]
    assert separator == "--"
    kind, _, count = moment.partition(":")
    if kind != "none":
        killer = KillAt(kind, float(count) if kind == "timer" else int(count))
        save = resilience.AtomicCheckpointIO.save_checkpoint
        instantiated = cli.BiGRUCLI.after_instantiate_classes

        def save_then_maybe_die(self: Any, *args: Any, **kwargs: Any) -> None:
            save(self, *args, **kwargs)
            killer._tick("after-save")

        def add_killer(self: cli.BiGRUCLI) -> None:
            instantiated(self)
            self.trainer.callbacks.append(killer)  # type: ignore[attr-defined]

        resilience.AtomicCheckpointIO.save_checkpoint = save_then_maybe_die  # type: ignore[method-assign]
        cli.BiGRUCLI.after_instantiate_classes = add_killer  # type: ignore[method-assign]
    cli.main(fit_args)


if __name__ == "__main__":
    main()
