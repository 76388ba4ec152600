"""Where the time of a training step goes on the project's Trainer path: torch.profiler over N steps.

    python benchmarks/profile_steps.py                                    # CPU, batch 256, 100 steps
    python benchmarks/profile_steps.py --accelerator gpu --precision bf16-mixed --batch_size 4096

Builds the run with the same CLI as ``scripts/fit.py`` (in a temporary folder), skips the first
``--warmup`` steps, records ``--steps`` training steps with ``torch.profiler`` and prints the ops that
took the most self CPU time, per step, and the host synchronisations per step (``aten::item`` /
``aten::_local_scalar_dense``: a tensor read on the host; ``cudaStreamSynchronize`` and
``cudaDeviceSynchronize`` on a GPU). On a GPU the target is zero host syncs per step.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

if __package__ in (None, ""):  # run as a script: make the peer modules importable as benchmarks.*
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SYNC_OPS = ("aten::item", "aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize")


def profile_steps(argv: Sequence[str], warmup: int, steps: int) -> tuple[Any, int]:
    """Profile ``steps`` training steps after ``warmup`` of the CLI run given by ``argv``; (profiler, steps)."""
    from lightning.pytorch.callbacks import Callback

    from bigru_lightning.cli import hand_data_facts_to_model, make_cli, quiet_known_warnings

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    profiler = profile(activities=activities)

    class StepWindow(Callback):
        recorded = 0

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if trainer.global_step == warmup:
                profiler.__enter__()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if warmup <= trainer.global_step - 1 < warmup + steps:
                self.recorded += 1
                if self.recorded == steps:
                    profiler.__exit__(None, None, None)
                    trainer.should_stop = True

    quiet_known_warnings()
    window = StepWindow()
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="bigru-profile-") as folder, contextlib.redirect_stdout(io.StringIO()):
        os.chdir(folder)
        try:
            cli = make_cli(list(argv))
            cli.datamodule.setup("fit")
            hand_data_facts_to_model(cli.datamodule, cli.model)
            cli.trainer.callbacks.append(window)  # type: ignore[attr-defined]
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        finally:
            os.chdir(previous)
    if window.recorded < steps:
        raise SystemExit(f"error: only {window.recorded} steps ran; give more --samples_per_class or fewer --steps")
    return profiler, steps


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options, profile, print the table and the host syncs per step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--samples_per_class", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=20, help="steps before the recorded window")
    parser.add_argument("--steps", type=int, default=100, help="steps recorded")
    parser.add_argument("--rows", type=int, default=20, help="rows of the table")
    options = parser.parse_args(argv)
    cli_args = [
        "--data.samples_per_class", str(options.samples_per_class), "--data.batch_size", str(options.batch_size),
        "--trainer.max_epochs", "1", "--trainer.accelerator", options.accelerator,
        "--trainer.precision", options.precision, "--trainer.enable_progress_bar", "false",
        "--trainer.limit_val_batches", "0",
    ]  # fmt: skip
    profiler, steps = profile_steps(cli_args, options.warmup, options.steps)
    averages = profiler.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=options.rows))
    total_us = sum(event.self_cpu_time_total for event in averages)
    print(f"self CPU time per step: {total_us / steps / 1000:.2f} ms over {steps} steps")
    for event in averages:
        if event.key in SYNC_OPS:
            print(f"host sync {event.key}: {event.count / steps:.2f} per step")
    if not any(event.key in SYNC_OPS for event in averages):
        print("host syncs per step: 0")


if __name__ == "__main__":
    main()
