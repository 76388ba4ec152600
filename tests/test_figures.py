"""Figures: test-time images in TensorBoard, confusion_matrix.json, and scripts/plot.py's PNG files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from conftest import REPO, script_env
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bigru_lightning.cli import main
from bigru_lightning.figures.drawing import CONFUSION_TAG, ROC_TAG, normalise_rows, read_confusion_json
from bigru_lightning.figures.plot_command import curve_figure, read_epoch_curves
from bigru_lightning.figures.plot_command import main as plot_main

EPOCHS = 3


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    """A 3-class, 3-epoch run with an imperfect model, so the confusion matrix has off-diagonal mass."""
    folder = tmp_path_factory.mktemp("figures")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        metrics = main(
            [
                "--data.means=[0.3, 0.0, -0.3]",
                "--data.samples_per_class=40",
                "--data.test_samples_per_class=60",
                "--data.seq_len=8",
                "--model.hidden_size=4",
                f"--trainer.max_epochs={EPOCHS}",
            ]
        )
    return folder / "lightning_logs" / "version_0", metrics


def test_tensorboard_has_the_test_figures(tiny_run: tuple[Path, dict[str, float]]) -> None:
    run_dir = tiny_run[0]
    images = {}
    for events in run_dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["images"]:
            images[tag] = accumulator.Images(tag)
    assert set(images) >= {CONFUSION_TAG, ROC_TAG}
    for tag in (CONFUSION_TAG, ROC_TAG):
        assert len(images[tag]) == 1  # logged once, at test time only
        assert images[tag][0].width > 100 and images[tag][0].height > 100
        assert images[tag][0].encoded_image_string.startswith(b"\x89PNG")


def test_confusion_json_matches_the_test_accuracy(tiny_run: tuple[Path, dict[str, float]]) -> None:
    run_dir, metrics = tiny_run
    normalised, counts, labels = read_confusion_json(run_dir / "confusion_matrix.json")
    assert labels == ["0", "1", "2"]
    assert counts.shape == (3, 3) and counts.sum() == 180
    assert counts.sum(axis=1).tolist() == [60, 60, 60]  # rows are the true classes
    np.testing.assert_allclose(normalised.sum(axis=1), 1.0)
    np.testing.assert_allclose(normalised, normalise_rows(counts))
    assert np.trace(counts) / counts.sum() == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_normalise_rows_keeps_empty_rows_at_zero() -> None:
    result = normalise_rows(np.array([[2, 2], [0, 0]]))
    assert result.tolist() == [[0.5, 0.5], [0.0, 0.0]]


def test_plot_writes_readable_pngs_with_one_point_per_epoch(
    tiny_run: tuple[Path, dict[str, float]], tmp_path: Path
) -> None:
    run_dir = tiny_run[0]
    curves = read_epoch_curves(run_dir)
    for tag in ("train/loss", "val/loss", "train/acc", "val/acc"):
        assert [epoch for epoch, _ in curves[tag]] == list(range(1, EPOCHS + 1)), tag
    figure = curve_figure(curves, "loss", "loss")
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["train/loss", "val/loss"]
    assert list(lines[0].get_xdata()) == [1, 2, 3]
    np.testing.assert_allclose(lines[1].get_ydata(), [value for _, value in curves["val/loss"]])

    written = plot_main([str(run_dir), "--output", str(tmp_path / "out")])
    names = sorted(path.name for path in written)
    assert names == ["accuracy.png", "confusion_matrix.png", "loss.png"]
    for path in written:
        assert path.parent == tmp_path / "out" and path.stat().st_size > 1000
        pixels = matplotlib.image.imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels[..., :3].std() > 0.01  # not a blank canvas


def test_plot_defaults_to_the_run_folder(tiny_run: tuple[Path, dict[str, float]]) -> None:
    run_dir = tiny_run[0]
    written = plot_main([str(run_dir)])
    assert {path.parent for path in written} == {run_dir}
    assert (run_dir / "loss.png").stat().st_size > 1000


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_plot_bad_run_dir_is_a_one_line_error(tmp_path: Path, make: str) -> None:
    target = tmp_path / "run"
    if make == "empty":
        target.mkdir()
    elif make == "file":
        target.write_text("not a run")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "plot.py"), str(target)],
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: RUN_DIR {target}"), result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*.png"))
