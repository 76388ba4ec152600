"""Time whole processes, interleaved: A, B, A, B, ... and report median wall and CPU (user+sys) seconds.

    python benchmarks/compare_processes.py --runs 5 \\
        --a "python benchmarks/tutorial_plain.py" --b "python scripts/fit.py"

Each command runs in a fresh temporary folder (logs do not pile up); its output is discarded. The ratio
is B over A, computed within each pair of neighbouring runs, then the median (and the range).
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import tempfile
import time


def run_once(command: str) -> tuple[float, float]:
    """Wall and CPU (user + sys of the children) seconds of one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="bigru-proc-") as folder:
        start = time.perf_counter()
        subprocess.run(
            shlex.split(command), cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="reference command")
    parser.add_argument("--b", required=True, help="command compared with it")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env_path = os.environ.get("PYTHONPATH", "")
    print(f"PYTHONPATH={env_path!r}; load average before: {os.getloadavg()[0]:.1f}")
    walls: dict[str, list[float]] = {"a": [], "b": []}
    cpus: dict[str, list[float]] = {"a": [], "b": []}
    for index in range(args.runs):
        order = ("a", "b") if index % 2 == 0 else ("b", "a")
        for key in order:
            wall, cpu = run_once(getattr(args, key))
            walls[key].append(wall)
            cpus[key].append(cpu)
        print(
            f"run {index + 1}: A {walls['a'][-1]:.2f}s (cpu {cpus['a'][-1]:.2f}s), "
            f"B {walls['b'][-1]:.2f}s (cpu {cpus['b'][-1]:.2f}s)",
            flush=True,
        )
    wall_ratios = [b / a for a, b in zip(walls["a"], walls["b"], strict=True)]
    cpu_ratios = [b / a for a, b in zip(cpus["a"], cpus["b"], strict=True)]
    for name, key in (("A", "a"), ("B", "b")):
        print(
            f"{name}: median wall {statistics.median(walls[key]):.2f}s, median cpu {statistics.median(cpus[key]):.2f}s"
        )
    print(
        f"B/A wall: median {statistics.median(wall_ratios):.3f} (range {min(wall_ratios):.3f}-{max(wall_ratios):.3f})"
    )
    print(f"B/A cpu:  median {statistics.median(cpu_ratios):.3f} (range {min(cpu_ratios):.3f}-{max(cpu_ratios):.3f})")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
