"""The recipe network's CPU training step on two torch threads, on one, and on one with the FCN branch on a worker.

What the recipe's ``threads: 1`` and ``bigru_lightning.model.branch_worker`` are measured by: a training
step (forward, cross-entropy, backward, fused AdamW) of the recipe's network at each development set's
batch shape (``benchmarks/gru_scan_speed.py``'s), with

- ``2 threads``: ``torch.set_num_threads(2)``, the branch in line (torch's default on a 2-core machine);
- ``1 thread``: ``torch.set_num_threads(1)``, the branch in line;
- ``1 thread + worker``: one thread, the FCN branch's forward and backward on a second thread.

Contestants interleaved in rounds, their order rotated; milliseconds per step, median and range.
OpenMP threads sleep between parallel regions (``OMP_WAIT_POLICY=PASSIVE``, as the package sets it)
unless the environment says otherwise.

    python benchmarks/step_threads.py --rounds 5
    python benchmarks/step_threads.py --shapes UnitTest waves --rounds 3 --repeats 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the peer modules importable as benchmarks.*
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as importing bigru_lightning does, before torch

import torch

from benchmarks.gru_scan_speed import SHAPES, training_step
from bigru_lightning.model import branch_worker

CONTESTANTS = {"2 threads": (2, False), "1 thread": (1, False), "1 thread + worker": (1, True)}


def milliseconds(step: Callable[[], None], threads: int, worker: bool, repeats: int) -> float:
    """Mean time of one step over ``repeats`` (after two warm-up steps), in ms."""
    original = branch_worker.applies
    torch.set_num_threads(threads)
    if not worker:
        branch_worker.applies = lambda _: False  # type: ignore[assignment]
    try:
        step()
        step()
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        return (time.perf_counter() - start) / repeats * 1000
    finally:
        branch_worker.applies = original


def main(argv: list[str] | None = None) -> None:
    """Print a markdown table: per shape, ms per training step for each contestant."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20, help="steps timed per contestant and round")
    parser.add_argument("--shapes", nargs="*", default=[name for name, *_ in SHAPES], help="development-set shapes")
    args = parser.parse_args(argv)
    threads_before = torch.get_num_threads()
    names = list(CONTESTANTS)
    print(f"torch {torch.__version__}, {args.rounds} rounds of {args.repeats} steps, median (range), ms per step\n")
    print("| shape (batch x steps x features) | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    try:
        for name, batch, steps, features, classes in SHAPES:
            if name not in args.shapes:
                continue
            step = training_step(batch, steps, features, classes)
            times: dict[str, list[float]] = {contestant: [] for contestant in names}
            for round_index in range(args.rounds):
                shift = round_index % len(names)
                for contestant in names[shift:] + names[:shift]:
                    threads, worker = CONTESTANTS[contestant]
                    times[contestant].append(milliseconds(step, threads, worker, args.repeats))
            cells = [_cell(times[contestant]) for contestant in names]
            print(f"| {name} ({batch} x {steps} x {features}) | " + " | ".join(cells) + " |", flush=True)
    finally:
        torch.set_num_threads(threads_before)


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


if __name__ == "__main__":
    main()
