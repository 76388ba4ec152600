"""Time of a run in each phase, from a py-spy ``raw`` profile (collapsed stacks).

    py-spy record --idle -r 100 -f raw -o fit.txt -- python scripts/fit.py
    py-spy record --idle -r 100 -f raw -o plain.txt -- python benchmarks/tutorial_plain.py
    python benchmarks/spy_breakdown.py fit.txt plain.txt --rate 100   # one column per profile

Record with ``--idle``: without it py-spy drops the samples in which the main thread waits for
torch's worker threads (with ``OMP_WAIT_POLICY=PASSIVE`` that is a sleep), and a multithreaded
phase looks shorter than it is (the plain script's evaluation came out at half its wall time).

Each sample goes to the first phase of :data:`PHASES` whose marker appears in its stack (imports
first: an import anywhere in the stack is start-up or lazy-import cost), else to ``other``. The phases
cover both ``scripts/fit.py`` and ``benchmarks/tutorial_plain.py`` (the whole-process reference), so
two profiles can be put side by side. Samples of threads other than the main one (TensorBoard's
writer thread, mostly waiting on its queue) are counted apart and left out of the shares: they are not
time the run waits for.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

BACKGROUND = "background threads (not in the shares)"
PLAIN = "benchmarks/tutorial_plain.py"

# (phase, markers): a sample belongs to the first phase with a marker in its stack. Evaluation comes
# before training, whose markers (the loss, the model's forward) also appear in evaluation stacks.
PHASES: list[tuple[str, tuple[str, ...]]] = [
    (BACKGROUND, ("_bootstrap (threading.py",)),
    ("imports", ("_find_and_load",)),
    ("data generation and split", ("make_splits", f"draw ({PLAIN}", "train_test_split")),
    ("Bayes oracle", ("bayes_accuracy",)),
    ("figures (draw + write)", ("figures/callback.py", "figures/drawing.py")),
    ("checkpoint writes", ("save_checkpoint",)),
    ("checkpoint reload for the test", ("_restore_modules_and_callbacks", "serialization.py")),
    ("validation steps", ("validation_step",)),
    ("test steps", ("test_step",)),
    ("validation and test (plain script)", (f"evaluate ({PLAIN}",)),
    ("training: backward", ("backward (torch/_tensor.py", "run_backward")),
    ("training: forward, loss, metrics", ("training_step", f"BiGRU.forward ({PLAIN}", "cross_entropy (torch")),
    ("training: optimizer step", ("step (torch/optim", "_single_tensor_adam", "_multi_tensor_adam", "zero_grad")),
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


def report(profiles: dict[str, Counter[str]], rate: float = 0.0) -> str:
    """One row per phase (largest first in the first profile), one column per profile.

    Each cell is the phase's share of the main thread's samples and, with ``rate`` (py-spy's ``-r``),
    its seconds.
    """
    main_thread = {name: Counter({k: v for k, v in c.items() if k != BACKGROUND}) for name, c in profiles.items()}
    order: list[str] = []
    for counts in main_thread.values():
        order += [phase for phase, _ in counts.most_common() if phase not in order]

    def cell(counts: Counter[str], phase: str) -> str:
        total = sum(counts.values()) or 1
        share = f"{100 * counts[phase] / total:5.1f}%"
        return f"{share} {counts[phase] / rate:7.2f} s" if rate else f"{share} {counts[phase]:7d}"

    total_row = "main thread (all phases)"
    columns = list(main_thread.values())
    width = max(len(phase) for phase in [*order, total_row])
    rows = [" " * width + "  " + "  ".join(f"{name[:16]:>16}" for name in profiles)]
    for phase in order:
        rows.append(f"{phase:<{width}}  " + "  ".join(f"{cell(c, phase):>16}" for c in columns))
    totals = [cell(Counter({total_row: sum(c.values())}), total_row) for c in columns]
    rows.append(f"{total_row:<{width}}  " + "  ".join(f"{c:>16}" for c in totals))
    background = [c[BACKGROUND] for c in profiles.values()]
    if any(background):
        rows.append(f"{BACKGROUND}: " + ", ".join(f"{n} samples" for n in background))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Print each phase's share (and seconds, with ``--rate``) for each profile given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("profiles", type=Path, nargs="+", help="py-spy record -f raw outputs")
    parser.add_argument("--rate", type=float, default=0.0, help="py-spy's -r (samples/s): also print seconds")
    options = parser.parse_args(argv)
    profiles = {path.name: breakdown(path.read_text().splitlines()) for path in options.profiles}
    print(report(profiles, options.rate))


if __name__ == "__main__":
    main()
