"""This project's defaults beside aeon's MiniRocket on public UCR/UEA sets and the example files.

For each set the project is run exactly as a user would run it, with the train and test file paths
and nothing else (``scripts/fit.py --data FileDataModule --data.train_file TRAIN --data.test_file
TEST`` in a subprocess, in a scratch folder), then aeon's ``MiniRocketClassifier`` is fitted on the
same training file and scored on the same test file. One markdown row per set: name, train/test
size, length, features, classes, accuracy and wall time of each.

Sets: names aeon ships inside its package (read offline from its ``.ts`` files) or can load by name
(``aeon.datasets.load_classification``, which downloads what it does not ship), and this project's
example files (``examples/data/waves*``): those have no test file, so the benchmark splits off 20%
stratified (``random_state=42``) and writes the two parts as ``.npz`` files that both contestants read.

    python benchmarks/ucr.py                                   # the development sets and examples
    python benchmarks/ucr.py --datasets UnitTest GunPoint      # any set aeon loads by name
    python benchmarks/ucr.py --rounds 3 --fit_args --trainer.max_epochs 50
    python benchmarks/ucr.py --rounds 5 --baseline ../old   # another checkout, interleaved: time ratios

With ``--rounds N`` each set is run N times, the two contestants interleaved; the row quotes the
median accuracy and time (and the range when N > 1).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEV_SETS = ("UnitTest", "PickupGestureWiimoteZ", "OSULeaf", "ACSF1")
EXAMPLES = ("waves.npz", "waves_long.csv", "waves.ts")
ACCURACY_LINE = re.compile(r"^Test Accuracy: ([0-9.]+)%", re.MULTILINE)


@dataclass
class Problem:
    """One benchmark set: its train and test files and their shape facts."""

    name: str
    train_file: Path
    test_file: Path
    train_size: int
    test_size: int
    length: str
    features: int
    classes: int


def aeon_data_dir() -> Path:
    """The folder of data sets that aeon ships inside its package."""
    import aeon.datasets

    return Path(aeon.datasets.__file__).resolve().parent / "data"


def ucr_problem(name: str, scratch: Path) -> Problem:
    """``name``'s train/test ``.ts`` files: aeon's shipped copy, else loaded by name and written out."""
    shipped = aeon_data_dir() / name
    train, test = shipped / f"{name}_TRAIN.ts", shipped / f"{name}_TEST.ts"
    if not (train.is_file() and test.is_file()):
        from aeon.datasets import load_classification, save_to_ts_file

        folder = scratch / "sets"
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("train", "test"):
            x, y = load_classification(name, split=split)
            save_to_ts_file(x, y, path=str(folder), problem_name=f"{name}_{split.upper()}", label_type="classification")
        train, test = folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts"
    return describe(name, train, test)


def example_problem(file_name: str, scratch: Path) -> Problem:
    """An example file split 80/20 (stratified, seed 42) into train and test ``.npz`` files."""
    from sklearn.model_selection import train_test_split

    from bigru_lightning.data.files import read_sequences

    data = read_sequences(ROOT / "examples" / "data" / file_name, require_labels=True)
    assert data.labels is not None
    labels = np.asarray([str(v) for v in data.labels])
    index = np.arange(data.num_sequences)
    train_index, test_index = train_test_split(
        index, test_size=math.ceil(0.2 * len(index)), random_state=42, stratify=labels
    )
    folder = scratch / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for part, rows in (("train", np.sort(train_index)), ("test", np.sort(test_index))):
        path = folder / f"{Path(file_name).stem}_{Path(file_name).suffix[1:]}_{part}.npz"
        arrays = {"X": np.asarray(data.x[rows], dtype=np.float32), "y": labels[rows]}
        if data.lengths is not None:
            arrays["lengths"] = data.lengths[rows]
        np.savez(path, **arrays)
        paths.append(path)
    return describe(file_name, paths[0], paths[1])


def describe(name: str, train_file: Path, test_file: Path) -> Problem:
    """Read both files once for the table's shape columns."""
    from bigru_lightning.data.files import read_sequences

    train = read_sequences(train_file, require_labels=True)
    test = read_sequences(test_file, require_labels=True, param="data.test_file")
    assert train.labels is not None
    lengths = [d.lengths for d in (train, test) if d.lengths is not None]
    if lengths:
        low = min(int(v.min()) for v in lengths)
        high = max(int(v.max()) for v in lengths)
        length = f"{low}-{high}" if low != high else str(high)
    else:
        length = str(train.num_steps)
    return Problem(
        name=name,
        train_file=train_file,
        test_file=test_file,
        train_size=train.num_sequences,
        test_size=test.num_sequences,
        length=length,
        features=train.num_features,
        classes=len(np.unique(np.asarray([str(v) for v in train.labels]))),
    )


def run_project(
    problem: Problem, scratch: Path, fit_args: list[str], round_index: int = 0, root: Path = ROOT
) -> tuple[float, float]:
    """Run ``scripts/fit.py`` with the two file paths (plus ``fit_args``); return (accuracy %, seconds).

    Round 0 runs the defaults as they are (seed 42); round ``k`` adds ``--seed_everything 42+k``, so
    that rounds show the spread over seeds, as MiniRocket's rounds do over its ``random_state``.
    ``root``: the checkout whose ``scripts/fit.py`` and package run (another commit's, for ``--baseline``).
    """
    seed = [] if round_index == 0 else ["--seed_everything", str(42 + round_index)]
    command = [
        sys.executable,
        str(root / "scripts" / "fit.py"),
        "--data",
        "FileDataModule",
        "--data.train_file",
        str(problem.train_file),
        "--data.test_file",
        str(problem.test_file),
        *seed,
        *fit_args,
    ]
    workdir = Path(tempfile.mkdtemp(dir=scratch, prefix="run-"))
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(root)}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    match = ACCURACY_LINE.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(
            f"{problem.name}: fit.py failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        )
    return float(match.group(1)), seconds


def aeon_arrays(path: Path) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
    """A file as aeon wants it: (N, channels, T), or a list of (channels, T_i) when lengths differ."""
    from bigru_lightning.data.files import read_sequences

    data = read_sequences(path, require_labels=True, param="file")
    assert data.labels is not None
    y = np.asarray([str(v) for v in data.labels])
    x = np.asarray(data.x, dtype=np.float64).transpose(0, 2, 1)
    if data.lengths is None:
        return x, y
    return [x[n, :, : int(data.lengths[n])] for n in range(len(y))], y


def run_minirocket(problem: Problem, seed: int) -> tuple[float, float]:
    """Fit aeon's MiniRocketClassifier on the train file, score it on the test file: (accuracy %, seconds)."""
    from aeon.classification.convolution_based import MiniRocketClassifier

    start = time.perf_counter()
    x_train, y_train = aeon_arrays(problem.train_file)
    x_test, y_test = aeon_arrays(problem.test_file)
    if isinstance(x_train, list) or isinstance(x_test, list):
        x_train, x_test = pad_to_common_length(x_train, x_test)
    classifier = MiniRocketClassifier(random_state=seed, n_jobs=1)
    classifier.fit(x_train, y_train)
    accuracy = 100.0 * float(np.mean(classifier.predict(x_test) == y_test))
    return accuracy, time.perf_counter() - start


def pad_to_common_length(*collections: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    """Zero-pad every series at the end to the longest length (MiniRocket needs equal lengths)."""
    longest = max(series.shape[-1] for collection in collections for series in collection)
    padded = []
    for collection in collections:
        stacked = np.zeros((len(collection), collection[0].shape[0], longest))
        for n, series in enumerate(collection):
            stacked[n, :, : series.shape[-1]] = series
        padded.append(stacked)
    return padded


def summary(values: list[float], digits: int) -> str:
    """Median, and the range when there is more than one value."""
    median = f"{statistics.median(values):.{digits}f}"
    if len(values) == 1:
        return median
    return f"{median} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    """Run the contestants on every requested set and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=list(DEV_SETS), help="UCR/UEA names aeon ships or loads")
    parser.add_argument("--examples", nargs="*", default=list(EXAMPLES), help="files in examples/data")
    parser.add_argument("--rounds", type=int, default=1, help="runs per set, the contestants interleaved")
    parser.add_argument("--skip_minirocket", action="store_true", help="run this project only")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout of this project (e.g. a git worktree of an older commit): run it too, "
        "interleaved with this one, and add its accuracy, time and the time ratio (this / baseline)",
    )
    parser.add_argument(
        "--fit_args", nargs=argparse.REMAINDER, default=[], help="extra options for fit.py (default: none)"
    )
    args = parser.parse_args()
    baseline = args.baseline.resolve() if args.baseline is not None else None
    if baseline is not None and not (baseline / "scripts" / "fit.py").is_file():
        parser.error(f"--baseline {args.baseline}: no scripts/fit.py there")
    with tempfile.TemporaryDirectory(prefix="ucr-bench-") as folder:
        scratch = Path(folder)
        problems = [ucr_problem(name, scratch) for name in args.datasets]
        problems += [example_problem(name, scratch) for name in args.examples]
        print(f"command: python benchmarks/ucr.py {' '.join(sys.argv[1:])}".rstrip())
        if baseline is not None:
            print(f"baseline: {baseline} ({git_description(baseline)}); this checkout: {git_description(ROOT)}")
        print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
        print()
        header = "| set | train / test | length | features | classes | this project: acc % | time s "
        header += "| MiniRocket: acc % | time s |"
        rule = "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        if baseline is not None:
            header += " baseline: acc % | time s | time ratio |"
            rule += " --- | --- | --- |"
        print(header)
        print(rule)
        set_times: dict[str, list[float]] = {"ours": [], "base": []}
        for problem in problems:
            ours: dict[str, list[float]] = {"acc": [], "time": []}
            peer: dict[str, list[float]] = {"acc": [], "time": []}
            base: dict[str, list[float]] = {"acc": [], "time": []}
            for round_index in range(args.rounds):
                accuracy, seconds = run_project(problem, scratch, args.fit_args, round_index)
                ours["acc"].append(accuracy)
                ours["time"].append(seconds)
                progress = f"{problem.name} round {round_index + 1}/{args.rounds}: "
                progress += f"this project {accuracy:.2f}% {seconds:.1f} s"
                if not args.skip_minirocket:
                    accuracy, seconds = run_minirocket(problem, seed=round_index)
                    peer["acc"].append(accuracy)
                    peer["time"].append(seconds)
                    progress += f", MiniRocket {accuracy:.2f}% {seconds:.1f} s"
                if baseline is not None:
                    accuracy, seconds = run_project(problem, scratch, args.fit_args, round_index, root=baseline)
                    base["acc"].append(accuracy)
                    base["time"].append(seconds)
                    progress += f", baseline {accuracy:.2f}% {seconds:.1f} s"
                print(progress, file=sys.stderr, flush=True)  # each round as it ends; the table is on stdout
            peer_cells = f"{summary(peer['acc'], 2)} | {summary(peer['time'], 1)}" if peer["acc"] else "- | -"
            row = (
                f"| {problem.name} | {problem.train_size} / {problem.test_size} | {problem.length} "
                f"| {problem.features} | {problem.classes} | {summary(ours['acc'], 2)} "
                f"| {summary(ours['time'], 1)} | {peer_cells} |"
            )
            if baseline is not None:
                per_round = [new / old for new, old in zip(ours["time"], base["time"], strict=True)]
                set_times["ours"].append(statistics.median(ours["time"]))
                set_times["base"].append(statistics.median(base["time"]))
                row += f" {summary(base['acc'], 2)} | {summary(base['time'], 1)} | {summary(per_round, 3)} |"
            print(row, flush=True)
        if set_times["base"]:
            ours_median, base_median = (statistics.median(set_times[key]) for key in ("ours", "base"))
            print(
                f"\nmedian over the sets of the median time: this {ours_median:.1f} s, baseline {base_median:.1f} s, "
                f"ratio {ours_median / base_median:.3f}; slowest set: this {max(set_times['ours']):.1f} s"
            )
        print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


def git_description(root: Path) -> str:
    """``git describe --always --dirty`` of ``root``, or ``unknown`` outside git."""
    done = subprocess.run(
        ["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"


if __name__ == "__main__":
    main()
