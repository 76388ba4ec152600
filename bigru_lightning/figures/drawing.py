"""Figures drawn with matplotlib (Agg canvas, no pyplot): a row-normalised confusion matrix and ROC curves.

Used at test time by :class:`bigru_lightning.figures.callback.TestFigureLogger` (images in TensorBoard)
and by ``scripts/plot.py`` (PNG files). matplotlib is imported only when a figure is drawn; this module
imports neither torch nor Lightning, so ``scripts/plot.py`` starts quickly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CONFUSION_FILE = "confusion_matrix.json"
CONFUSION_TAG = "test/confusion_matrix"
ROC_TAG = "test/roc"


def normalise_rows(counts: np.ndarray) -> np.ndarray:
    """Each row (true class) divided by its total, so row ``i`` says where class ``i`` went; empty rows stay 0."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure on an Agg canvas (no pyplot, no global backend state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def confusion_figure(normalised: np.ndarray, labels: list[str], counts: np.ndarray | None = None) -> Figure:
    """Heat map of a row-normalised confusion matrix, each cell annotated (with its count when given)."""
    size = len(labels)
    figure = new_figure(1.6 + 0.55 * max(size, 3), 1.2 + 0.55 * max(size, 3))
    axes = figure.add_subplot()
    image = axes.imshow(normalised, vmin=0.0, vmax=1.0, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
    axes.set_xticks(range(size), labels, rotation=45 if size > 4 else 0)
    axes.set_yticks(range(size), labels)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("Confusion matrix (rows sum to 1)")
    if size <= 12:
        for i in range(size):
            for j in range(size):
                text = f"{normalised[i, j]:.2f}"
                if counts is not None:
                    text += f"\n({int(counts[i, j])})"
                colour = "white" if normalised[i, j] > 0.5 else "black"
                axes.text(j, i, text, ha="center", va="center", color=colour, fontsize=8)
    return figure


def roc_figure(fpr: np.ndarray, tpr: np.ndarray, labels: list[str]) -> Figure:
    """One-vs-rest ROC curve per class (rows of ``fpr``/``tpr``), with each curve's area in the legend."""
    figure = new_figure(4.8, 4.4)
    axes = figure.add_subplot()
    for k, label in enumerate(labels):
        order = np.argsort(fpr[k], kind="stable")
        x, y = fpr[k][order], tpr[k][order]
        area = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))
        axes.plot(x, y, label=f"class {label} (AUC {area:.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="chance")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title("ROC on the test set (one vs rest)")
    axes.legend(loc="lower right", fontsize=8)
    return figure


def figure_to_rgb(figure: Figure) -> np.ndarray:
    """Render ``figure`` to an (H, W, 3) uint8 array."""
    canvas = figure.canvas
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]


def write_confusion_json(path: Path, counts: np.ndarray, labels: list[str]) -> None:
    """Save the confusion counts, their row-normalised form and the label names as JSON."""
    payload = {
        "labels": labels,
        "counts": counts.astype(np.int64).tolist(),
        "normalized": normalise_rows(counts).tolist(),
        "rows": "true class",
        "columns": "predicted class",
    }
    path.write_text(json.dumps(payload, indent=1) + "\n")


def read_confusion_json(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(normalised, counts, labels)`` from a file written by :func:`write_confusion_json`."""
    payload: dict[str, Any] = json.loads(path.read_text())
    counts = np.asarray(payload["counts"], dtype=np.float64)
    return np.asarray(payload["normalized"], dtype=np.float64), counts, [str(x) for x in payload["labels"]]
