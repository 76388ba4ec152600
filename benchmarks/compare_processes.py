"""Whole processes against each other, interleaved: wall time, CPU time and peak memory, median and range.

    python benchmarks/compare_processes.py --preset tutorial --rounds 5   # scripts/fit.py vs the tutorial's script
    python benchmarks/compare_processes.py --preset scaled --rounds 5     # 100,000 per class, batch 256, 3 epochs
    python benchmarks/compare_processes.py --a "python x.py" --b "python y.py" --rounds 5

Each command first runs ``--warmup`` times untimed (default once: the page cache, Python's bytecode
cache). Then the pair runs ``--rounds`` times in alternating order (A B, B A, ...), each run in a
fresh temporary folder with its output discarded. Per run: wall seconds, CPU seconds (user + sys)
and peak resident memory (the command's own ``ru_maxrss``). The ratios B/A are taken within each
round; their median and range are printed, with a warning when the range is too wide to trust the
median (``benchmarks/rounds.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the peer modules importable as benchmarks.*
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.rounds import rotated, summarise

REPO = Path(__file__).resolve().parent.parent
SCALED = "--samples_per_class 100000 --batch_size 256"
PRESETS: dict[str, tuple[str, str]] = {
    # (A: the plain PyTorch reference, B: the project's command doing the same work and more)
    "tutorial": (f"{sys.executable} {REPO}/benchmarks/tutorial_plain.py", f"{sys.executable} {REPO}/scripts/fit.py"),
    "scaled": (
        f"{sys.executable} {REPO}/benchmarks/tutorial_plain.py {SCALED} --epochs 3",
        f"{sys.executable} {REPO}/scripts/fit.py --data.samples_per_class 100000 --data.batch_size 256 "
        "--trainer.max_epochs 3",
    ),
}


@dataclass
class ProcessRun:
    """One finished run: wall and CPU seconds, peak resident memory in MiB."""

    wall_s: float
    cpu_s: float
    peak_mib: float


# A small launcher between this (large) process and the command: a child's peak RSS starts at the RSS it
# inherits at fork time, so the command is forked from the launcher, which reports the command's own peak.
LAUNCHER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(code)"
)


def run_once(command: str, env: dict[str, str] | None = None) -> ProcessRun:
    """Run ``command`` in a fresh temporary folder; its wall and CPU seconds and its peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bigru-proc-") as folder:
        peak_file = Path(folder) / ".peak_rss_kib"
        launcher = [sys.executable, "-S", "-c", LAUNCHER, str(peak_file)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        process = subprocess.Popen(
            [*launcher, *shlex.split(command)], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        _, error_bytes = process.communicate()
        wall = time.perf_counter() - start
        peak_kib = int(peak_file.read_text()) if peak_file.exists() else 0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the launcher's and the command's CPU seconds
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if process.returncode != 0:
        error = error_bytes.decode(errors="replace")
        raise RuntimeError(f"{command!r} exited with {process.returncode}:\n{error[-2000:]}")
    return ProcessRun(wall, cpu, peak_kib / 1024)  # ru_maxrss: KiB on Linux


def compare(a: str, b: str, rounds: int, log: Any = print, warmup: int = 1) -> dict[str, Any]:
    """Run each command ``warmup`` times untimed, then ``rounds`` interleaved rounds; summarise each quantity."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    commands = {"a": a, "b": b}
    for _ in range(warmup):
        for command in commands.values():
            run_once(command, env)
    runs: dict[str, list[ProcessRun]] = {"a": [], "b": []}
    for index in range(rounds):
        for key in rotated(["a", "b"], index):
            runs[key].append(run_once(commands[key], env))
        log(
            f"round {index + 1}/{rounds}: "
            + ", ".join(
                f"{key.upper()} {runs[key][-1].wall_s:.2f}s wall, {runs[key][-1].cpu_s:.2f}s cpu, "
                f"{runs[key][-1].peak_mib:.0f} MiB"
                for key in ("a", "b")
            )
        )
    result: dict[str, Any] = {"a": a, "b": b, "rounds": rounds, "warmup": warmup, "load_average": os.getloadavg()}
    for what in ("wall_s", "cpu_s", "peak_mib"):
        for key in ("a", "b"):
            result[f"{key}_{what}"] = summarise([getattr(run, what) for run in runs[key]]).as_dict()
        ratios = [getattr(rb, what) / getattr(ra, what) for ra, rb in zip(runs["a"], runs["b"], strict=True)]
        result[f"b_over_a_{what}"] = summarise(ratios).as_dict()
    return result


def format_report(result: dict[str, Any]) -> str:
    """Medians, ranges and ratios as lines of text."""
    from benchmarks.rounds import Summary

    def text(key: str, digits: int = 2) -> str:
        value = result[key]
        return Summary(value["median"], value["low"], value["high"], value["rounds"], value["trusted"]).describe(digits)

    lines = [
        f"A: {result['a']}",
        f"B: {result['b']}",
        f"{result['rounds']} interleaved rounds after {result['warmup']} warm-up run(s) each; load average "
        f"{result['load_average'][0]:.1f} at the end",
    ]
    for what, unit in (("wall_s", "s wall"), ("cpu_s", "s cpu"), ("peak_mib", " MiB peak RSS")):
        lines.append(f"A {unit:>14}: {text(f'a_{what}')}")
        lines.append(f"B {unit:>14}: {text(f'b_{what}')}")
        lines.append(f"B/A {what:>12}: {text(f'b_over_a_{what}', 3)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse options, compare, print the report (or one JSON object with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a named pair of commands (instead of --a/--b)")
    parser.add_argument("--a", help="reference command")
    parser.add_argument("--b", help="command compared with it")
    parser.add_argument("--rounds", "--runs", type=int, default=5, help="interleaved rounds (>= 5 to trust a median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each command first")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    options = parser.parse_args(argv)
    if options.preset:
        if options.a or options.b:
            parser.error("--preset replaces --a and --b: give one or the other")
        a, b = PRESETS[options.preset]
    elif options.a and options.b:
        a, b = options.a, options.b
    else:
        parser.error("give --preset or both --a and --b")
    if options.rounds < 1 or options.warmup < 0:
        parser.error(f"--rounds must be >= 1 and --warmup >= 0; got {options.rounds} and {options.warmup}")
    result = compare(a, b, options.rounds, log=(lambda _line: None) if options.json else print, warmup=options.warmup)
    print(json.dumps(result) if options.json else format_report(result), flush=True)
    return result


if __name__ == "__main__":
    main()
