"""The estimator and the scripts: same predictions as scripts/fit.py + scripts/predict.py, and one checkpoint format.

On the example files and on aeon's bundled UCR/UEA sets (fixed and variable length, univariate and
multivariate), ``SequenceClassifier(random_state=42, max_steps=20)`` fitted on the training file's
arrays predicts the test file exactly as the checkpoint ``scripts/fit.py`` tests (seed 42 is its
default), run through ``scripts/predict.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from bigru_lightning import SequenceClassifier
from bigru_lightning.cli import main as fit_main
from bigru_lightning.data.files import read_sequences
from bigru_lightning.export import main as export_main
from bigru_lightning.predict import main as predict_main

STEPS = 20
AEON_DATA = Path(__import__("aeon").__file__).parent / "datasets" / "data"


def _npz_halves(folder: Path) -> tuple[Path, Path]:
    """examples/data/waves.npz (fixed length, 2 features, integer labels) split into train and test files."""
    data = np.load(REPO / "examples" / "data" / "waves.npz")
    x, y = data["X"], data["y"]
    np.savez(folder / "train.npz", X=x[:80], y=y[:80])
    np.savez(folder / "test.npz", X=x[80:], y=y[80:])
    return folder / "train.npz", folder / "test.npz"


def _large_npz(folder: Path) -> tuple[Path, Path]:
    """600 training sequences (univariate, 12 steps): the recipe holds out 20% to validate and picks the best."""
    rng = np.random.default_rng(7)
    for name, count in (("train", 600), ("test", 90)):
        y = rng.integers(0, 3, count)
        x = rng.standard_normal((count, 12)) + 0.6 * y[:, None] * np.sin(np.arange(12))[None, :]
        np.savez(folder / f"{name}.npz", X=x.astype(np.float32), y=y)
    return folder / "train.npz", folder / "test.npz"


def _csv_halves(folder: Path) -> tuple[Path, Path]:
    """examples/data/waves_long.csv (lengths 20-40, 2 features, string labels) split by sequence."""
    with (REPO / "examples" / "data" / "waves_long.csv").open() as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    ids = sorted({row[0] for row in body})
    test_ids = set(ids[::3])
    for name, keep in (("train", lambda i: i not in test_ids), ("test", lambda i: i in test_ids)):
        with (folder / f"{name}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(row for row in body if keep(row[0]))
    return folder / "train.csv", folder / "test.csv"


def _aeon_files(name: str) -> tuple[Path, Path]:
    return AEON_DATA / name / f"{name}_TRAIN.ts", AEON_DATA / name / f"{name}_TEST.ts"


def _arrays(path: Path) -> tuple[list[np.ndarray] | np.ndarray, np.ndarray]:
    """The sequences of a file as a user holds them: a 3-D array, or a list when lengths differ."""
    data = read_sequences(path, require_labels=True)
    x = np.asarray(data.x)
    labels = data.labels.values() if hasattr(data.labels, "values") else np.asarray(data.labels)
    if data.lengths is None:
        return x, np.asarray(labels)
    return [x[i, : int(n)] for i, n in enumerate(data.lengths)], np.asarray(labels)


def _aeon_arrays(name: str, split: str) -> tuple[list[np.ndarray] | np.ndarray, np.ndarray]:
    """aeon's arrays (cases, channels, steps), or a list of (channels, steps), turned to (steps, channels)."""
    from aeon.datasets import load_classification

    x, y = load_classification(name, split=split)
    if isinstance(x, np.ndarray):
        return x.transpose(0, 2, 1), y
    return [case.T for case in x], y


def _read_predictions(path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    with path.open() as handle:
        rows = list(csv.reader(handle))
    columns = [name.removeprefix("prob_") for name in rows[0][2:]]
    return [row[1] for row in rows[1:]], np.array([[float(v) for v in row[2:]] for row in rows[1:]]), columns


def _fit_py(train: Path, test: Path, folder: Path) -> Path:
    """Run scripts/fit.py's main on the two files; the checkpoint it tested (the only best-*.ckpt)."""
    files = ["--data", "FileDataModule", "--data.train_file", str(train), "--data.test_file", str(test)]
    fit_main([*files, "--trainer.max_steps", str(STEPS), "--trainer.enable_progress_bar", "false"])
    (best,) = sorted((folder / "lightning_logs").glob("version_0/checkpoints/best-*.ckpt"))
    return best


@pytest.mark.parametrize(
    "data",
    [
        "npz fixed multivariate",
        "csv variable multivariate",
        "large validation split",
        "UnitTest fixed univariate",
        "JapaneseVowels variable",
    ],
)
def test_estimator_predicts_what_fit_py_and_predict_py_predict(data: str, in_tmp: Path) -> None:
    if data.startswith("npz"):
        train_file, test_file = _npz_halves(in_tmp)
        (x_train, y_train), (x_test, _) = _arrays(train_file), _arrays(test_file)
    elif data.startswith("csv") or data.startswith("large"):
        train_file, test_file = _csv_halves(in_tmp) if data.startswith("csv") else _large_npz(in_tmp)
        (x_train, y_train), (x_test, _) = _arrays(train_file), _arrays(test_file)
    else:
        name = data.split()[0]
        train_file, test_file = _aeon_files(name)
        (x_train, y_train), (x_test, _) = _aeon_arrays(name, "train"), _aeon_arrays(name, "test")
    best = _fit_py(train_file, test_file, in_tmp)
    predict_main(["--ckpt_path", str(best), "--input", str(test_file), "--output", "fit_py.csv"])
    expected_labels, expected, columns = _read_predictions(in_tmp / "fit_py.csv")

    estimator = SequenceClassifier(max_steps=STEPS, random_state=42).fit(x_train, y_train)
    assert [str(c) for c in estimator.classes_] == columns
    np.testing.assert_allclose(estimator.predict_proba(x_test), expected, atol=1e-6)
    assert [str(label) for label in estimator.predict(x_test)] == expected_labels
    # the labels keep their type: strings stay strings, integers integers
    assert type(estimator.classes_[0]) is type(np.asarray(y_train)[0])

    # fit.py's checkpoint loads into the estimator and predicts the same
    loaded = SequenceClassifier.load(best)
    assert loaded.get_params()["random_state"] == 42 and loaded.get_params()["hidden_size"] == 64  # the recipe's
    np.testing.assert_allclose(loaded.predict_proba(x_test), expected, atol=1e-6)
    assert [str(label) for label in loaded.predict(x_test)] == expected_labels


def test_saved_file_goes_through_predict_py_and_export_py(in_tmp: Path) -> None:
    train_file, test_file = _csv_halves(in_tmp)
    (x_train, y_train), (x_test, _) = _arrays(train_file), _arrays(test_file)
    estimator = SequenceClassifier(max_steps=5, hidden_size=8, rocket_features=0, conv_channels=[]).fit(
        x_train, y_train
    )
    path = estimator.save(in_tmp / "model.ckpt")
    predict_main(["--ckpt_path", str(path), "--input", str(test_file), "--output", "saved.csv"])
    labels, probabilities, columns = _read_predictions(in_tmp / "saved.csv")
    assert columns == list(estimator.classes_)
    assert labels == list(estimator.predict(x_test))
    np.testing.assert_allclose(probabilities, estimator.predict_proba(x_test), atol=1e-6)
    export_main(["--ckpt_path", str(path), "--format", "torchscript", "--output", "model.pt"])
    assert (in_tmp / "model.pt").stat().st_size > 0

    loaded = SequenceClassifier.load(path)
    assert loaded.get_params() == estimator.get_params()
    assert list(loaded.classes_) == list(estimator.classes_) and loaded.n_features_in_ == 2
    np.testing.assert_array_equal(loaded.predict_proba(x_test), estimator.predict_proba(x_test))
