"""Surviving crashes: atomic checkpoint files, RNG state in checkpoints, graceful Ctrl-C / SIGTERM.

Together with the (seed, epoch)-seeded batch order of :class:`~bigru_lightning.data.TensorBatcher`
(whose position inside an epoch is checkpointed too), a run killed at any moment and resumed with
``--ckpt_path last`` ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any, cast

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from bigru_lightning.app import atomic_output


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file in the target folder, fsync it, then rename it into place.

    A process killed at any moment leaves either the previous file or the new one, never a torn file.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Save ``checkpoint`` to ``path`` atomically."""
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(target, durable=True) as temporary:
            torch.save(checkpoint, temporary)


class RNGStateCheckpoint(Callback):
    """Store the Python, NumPy and torch (CPU and CUDA) random states in every checkpoint, and restore them.

    Dropout draws from torch's global generator, so without this a resumed run would diverge.
    The states are stored as tensors and plain values, loadable with ``torch.load(weights_only=True)``.
    """

    def state_dict(self) -> dict[str, Any]:
        """The random states of this process, right now."""
        np_state = cast(tuple[Any, ...], np.random.get_state(legacy=True))
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": {
                "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                "pos": int(np_state[2]),
                "has_gauss": int(np_state[3]),
                "cached_gaussian": float(np_state[4]),
            },
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the random states saved by :meth:`state_dict`."""
        if not state_dict:
            return
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        numpy_state = state_dict["numpy"]
        np.random.set_state(
            (
                "MT19937",
                numpy_state["keys"].numpy().astype(np.uint32),
                numpy_state["pos"],
                numpy_state["has_gauss"],
                numpy_state["cached_gaussian"],
            )
        )
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


PENDING_EPOCH_LOG = "pending_epoch_log"  # checkpoint key: epoch metrics not yet in the logger when it was written


class ResumableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose every file resumes exactly, and whose logs survive a kill.

    - A step-triggered save (``every_n_train_steps``) that falls on an epoch's last training batch
      is made at the end of that epoch instead, after its validation: Lightning resumes a checkpoint
      written before that validation as if the whole epoch were done, skipping the validation and
      the epoch's ``train/*`` metrics.
    - Before each file is written the loggers are flushed, so what was logged up to that step is on
      disk; a resumed run purges (``purge_step``) only what the killed run logged after it.
    - An end-of-epoch file is written before Lightning hands the epoch's metrics to the loggers; it
      carries them, and a run resumed from it logs them (:data:`PENDING_EPOCH_LOG`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferred_batch_end: tuple[Any, ...] | None = None
        self._log_on_resume: dict[str, Any] | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """Save every n steps, except on the epoch's last batch, whose save waits for the epoch's end."""
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._deferred_batch_end = args
            return
        super().on_train_batch_end(trainer, pl_module, *args)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Make the last batch's deferred save, then the usual end-of-epoch one."""
        if self._deferred_batch_end is not None:
            deferred, self._deferred_batch_end = self._deferred_batch_end, None
            super().on_train_batch_end(trainer, pl_module, *deferred)
        super().on_train_epoch_end(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Flush the loggers; at an epoch's end, add the epoch metrics they have not received yet."""
        for logger in trainer.loggers:
            logger.save()
        progress = cast(Any, trainer.fit_loop.epoch_progress.current)  # the epochs counted as started, processed, ...
        if progress.processed > progress.completed:  # between on_train_epoch_end and the epoch's logging
            checkpoint[PENDING_EPOCH_LOG] = {
                "step": trainer.global_step - 1,  # Lightning logs epoch metrics at the epoch's last step
                "epoch": trainer.current_epoch,
                "metrics": {name: float(value) for name, value in trainer.callback_metrics.items()},
            }

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Remember the epoch metrics the run that wrote this checkpoint may not have logged."""
        self._log_on_resume = checkpoint.get(PENDING_EPOCH_LOG)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the restored epoch metrics (the resumed logger purged that step, see :func:`resume_purge_step`)."""
        pending, self._log_on_resume = self._log_on_resume, None
        if pending is None or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.log_metrics({**pending["metrics"], "epoch": pending["epoch"]}, step=pending["step"])
            logger.save()


def resume_purge_step(checkpoint: dict[str, Any]) -> int:
    """The first logger step that a run resumed from ``checkpoint`` writes again (earlier steps are kept)."""
    pending = checkpoint.get(PENDING_EPOCH_LOG)
    return int(pending["step"]) if pending else int(checkpoint.get("global_step", 0))


class GracefulStop(Callback):
    """Ctrl-C or SIGTERM: finish the current step, write ``last.ckpt``, stop.

    The first Ctrl-C sends this process SIGTERM, which Lightning turns into a stop after the running
    step and ``SIGTERMException``; a second Ctrl-C aborts at once. On either signal the
    callback writes ``last.ckpt`` (atomically) beside the other checkpoints, so
    ``--ckpt_path last`` resumes from exactly that step.
    """

    def __init__(self) -> None:
        self._previous_handler: Any = None
        self.saved_path: str | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Remove temporary files a killed run left mid-write; install the Ctrl-C handler (main thread only)."""
        checkpoint = trainer.checkpoint_callback
        if trainer.is_global_zero and isinstance(checkpoint, ModelCheckpoint) and checkpoint.dirpath:
            for leftover in Path(checkpoint.dirpath).glob(".*.ckpt.*.tmp"):
                leftover.unlink(missing_ok=True)
        if not _in_main_thread():
            return
        self._previous_handler = signal.getsignal(signal.SIGINT)

        def request_stop(signum: int, frame: FrameType | None) -> None:
            print("\nStopping after this step (press Ctrl-C again to abort now) ...", file=sys.stderr, flush=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            # Lightning's own SIGTERM handler (installed for every fit) asks the loops to stop after
            # this step and raise SIGTERMException: the public way in, pinned by tests/test_resilience.py.
            signal.raise_signal(signal.SIGTERM)

        signal.signal(signal.SIGINT, request_stop)

    def _restore_handler(self) -> None:
        if self._previous_handler is not None and _in_main_thread():
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Put the previous Ctrl-C handler back."""
        self._restore_handler()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """On an interrupt, write ``last.ckpt`` so that no finished step is lost."""
        self._restore_handler()
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.sanity_checking:
            return
        checkpoint = trainer.checkpoint_callback
        if not isinstance(checkpoint, ModelCheckpoint) or not checkpoint.dirpath or trainer.global_step == 0:
            return
        path = os.path.join(checkpoint.dirpath, f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}")
        trainer.save_checkpoint(path, weights_only=False)  # the full state, to resume from
        self.saved_path = path


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
