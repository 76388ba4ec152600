"""Share of a run's time in each phase, from a py-spy ``raw`` profile (collapsed stacks).

    py-spy record -r 200 -f raw -o run.txt -- python scripts/fit.py
    python benchmarks/spy_breakdown.py run.txt

Each sample goes to the first phase of :data:`PHASES` whose marker appears in its stack (imports
first: an import anywhere in the stack is start-up or lazy-import cost), else to ``other``. Samples of
threads other than the main one (TensorBoard's writer thread, mostly waiting on its queue) are counted
apart and left out of the shares: they are not time the run waits for.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

BACKGROUND = "background threads (not in the shares)"

# (phase, markers): a sample belongs to the first phase with a marker in its stack.
PHASES: list[tuple[str, tuple[str, ...]]] = [
    (BACKGROUND, ("_bootstrap (threading.py",)),
    ("imports", ("_find_and_load",)),
    ("data generation and split", ("make_splits",)),
    ("Bayes oracle", ("bayes_accuracy",)),
    ("figures (draw + write)", ("figures/callback.py", "figures/drawing.py")),
    ("checkpoint writes", ("save_checkpoint",)),
    ("checkpoint reload for the test", ("_restore_modules_and_callbacks", "serialization.py")),
    ("training: backward", ("backward (torch/_tensor.py", "run_backward")),
    ("training: forward, loss, metrics", ("training_step",)),
    ("training: optimizer step", ("step (torch/optim", "_single_tensor_adam", "_multi_tensor_adam")),
    ("validation steps", ("validation_step",)),
    ("test steps", ("test_step",)),
    ("test metrics compute", ("on_test_epoch_end",)),
    ("final logging (HParams, bayes scalar)", ("_log_final",)),
    ("CLI parse and instantiate", ("make_cli",)),
    ("Trainer loop machinery (fit)", ("fit (lightning",)),
    ("Trainer loop machinery (test)", ("test (lightning",)),
]


def breakdown(lines: list[str]) -> Counter[str]:
    """Samples per phase."""
    counts: Counter[str] = Counter()
    for line in lines:
        stack, _, number = line.rstrip().rpartition(" ")
        if not stack or not number.isdigit():
            continue
        phase = next((name for name, markers in PHASES if any(m in stack for m in markers)), "other")
        counts[phase] += int(number)
    return counts


def main() -> None:
    """Print each phase's share of the samples, largest first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("profile", type=Path, help="py-spy record -f raw output")
    options = parser.parse_args()
    counts = breakdown(options.profile.read_text().splitlines())
    background = counts.pop(BACKGROUND, 0)
    total = sum(counts.values()) or 1
    for phase, samples in counts.most_common():
        print(f"{100 * samples / total:5.1f}%  {samples:7d}  {phase}")
    print(f"100.0%  {total:7d}  samples of the main thread")
    if background:
        print(f"        {background:7d}  {BACKGROUND}")


if __name__ == "__main__":
    main()
