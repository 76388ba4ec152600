"""``scripts/plot.py RUN_DIR``: a run's loss and accuracy curves and its confusion matrix as PNG files.

The curves come from the run's TensorBoard event files (read with tensorboard's ``EventAccumulator``),
one point per epoch for ``train/*`` and ``val/*``; the confusion matrix from ``confusion_matrix.json``,
which the test stage writes beside them (:mod:`bigru_lightning.figures.callback`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bigru_lightning.app import OptionParser, run_command
from bigru_lightning.errors import UserInputError
from bigru_lightning.figures.drawing import CONFUSION_FILE, confusion_figure, new_figure, read_confusion_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Curve = list[tuple[int, float]]  # (epoch number from 1, value)
CURVE_TAGS = ("train/loss", "val/loss", "train/acc", "val/acc")


def read_epoch_curves(run_dir: Path) -> dict[str, Curve]:
    """Per-epoch values of :data:`CURVE_TAGS` found in ``run_dir``'s event files.

    Points are keyed by the logged ``epoch`` scalar (a resumed run that logged a step twice keeps
    the later value); without it, by the order of the steps.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[str, dict[int, float]] = {}
    epoch_of_step: dict[int, int] = {}
    for events in sorted(run_dir.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        tags = accumulator.Tags().get("scalars", [])
        if "epoch" in tags:
            for event in accumulator.Scalars("epoch"):
                epoch_of_step.setdefault(event.step, int(event.value))
        for tag in CURVE_TAGS:
            if tag in tags:
                for event in accumulator.Scalars(tag):
                    values.setdefault(tag, {})[event.step] = event.value
    curves: dict[str, Curve] = {}
    for tag, by_step in values.items():
        steps = sorted(by_step)
        epochs = [epoch_of_step[s] + 1 if s in epoch_of_step else i + 1 for i, s in enumerate(steps)]
        curves[tag] = sorted(dict(zip(epochs, (by_step[s] for s in steps), strict=True)).items())
    return curves


def curve_figure(curves: dict[str, Curve], metric: str, title: str) -> Figure:
    """Train and validation ``metric`` (``loss`` or ``acc``) against the epoch."""
    figure = new_figure(5.0, 3.6)
    axes = figure.add_subplot()
    for stage, style in (("train", "-o"), ("val", "-s")):
        points = curves.get(f"{stage}/{metric}", [])
        if points:
            epochs, values = zip(*points, strict=True)
            axes.plot(epochs, values, style, markersize=3, label=f"{stage}/{metric}")
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def run_folder_example(folder: Path) -> str:
    """The newest run folder (``version_N``) in ``folder`` or one level below it, else a generic example.

    So that ``plot.py DIR`` on a ``--trainer.default_root_dir`` (or a logger's folder) names the run to give.
    """
    runs = [*folder.glob("version_*"), *folder.glob("*/version_*")]
    runs = [run for run in runs if run.is_dir()]
    if not runs:
        return "lightning_logs/version_0"
    return str(max(runs, key=lambda run: run.stat().st_mtime))


def write_plots(run_dir: Path, output: Path) -> list[Path]:
    """Write ``loss.png``, ``accuracy.png`` and (when the run was tested) ``confusion_matrix.png``."""
    if not run_dir.is_dir():
        raise UserInputError(f"RUN_DIR {run_dir}: no such folder (give a run folder such as lightning_logs/version_0)")
    curves = read_epoch_curves(run_dir)
    if "train/loss" not in curves:
        raise UserInputError(
            f"RUN_DIR {run_dir}: no TensorBoard events with train/loss here "
            f"(give a run folder such as {run_folder_example(run_dir)})"
        )
    if output.exists() and not output.is_dir():
        raise UserInputError(f"--output {output}: exists and is not a folder")
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, metric, title in (("loss.png", "loss", "Cross-entropy loss"), ("accuracy.png", "acc", "Accuracy")):
        curve_figure(curves, metric, title).savefig(output / name, dpi=100)
        written.append(output / name)
    confusion = run_dir / CONFUSION_FILE
    if confusion.is_file():
        normalised, counts, labels = read_confusion_json(confusion)
        confusion_figure(normalised, labels, counts).savefig(output / "confusion_matrix.png", dpi=100)
        written.append(output / "confusion_matrix.png")
    else:
        print(f"note: {confusion} not found (the run was not tested): no confusion_matrix.png", file=sys.stderr)
    return written


def main(args: Sequence[str] | None = None) -> list[Path]:
    """Parse ``args`` (default: ``sys.argv[1:]``), write the PNG files and print their paths."""
    parser = OptionParser(prog="plot.py", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("run_dir", type=Path, help="a run folder, e.g. lightning_logs/version_0")
    parser.add_argument("--output", type=Path, default=None, help="folder for the PNG files (default: RUN_DIR)")

    def plot() -> list[Path]:
        namespace = parser.parse_args(args)
        return write_plots(namespace.run_dir, namespace.output or namespace.run_dir)

    written = run_command(plot, {OSError: 2})
    for path in written:
        print(path)
    return written
