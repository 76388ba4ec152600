"""SequenceClassifier as scikit-learn users expect it: the estimator checks, the tools, inputs, quiet and files."""

from __future__ import annotations

import inspect
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from bigru_lightning import SequenceClassifier
from bigru_lightning.cli import expand_shorthands, make_cli
from bigru_lightning.data import memory
from bigru_lightning.estimator import classifier as classifier_module
from bigru_lightning.estimator.inputs import as_sequences, encode_labels
from bigru_lightning.estimator.options import (
    MANAGED_TRAINER_OPTIONS,
    MODEL_OPTIONS,
    OWN_KEYWORDS,
    cli_args,
    keyword_flags,
)
from bigru_lightning.figures.drawing import CONFUSION_FILE, CONFUSION_TAG, ROC_TAG, read_confusion_json

# Small and quick: a plain BiGRU of 8 units, no random-kernel or FCN branch, 10 epochs.
FAST: dict[str, Any] = {"hidden_size": 8, "rocket_features": 0, "conv_channels": [], "max_epochs": 10}
# The estimator checks that do not apply, and why (docs/python-api.md lists them too).
N_FEATURES = (
    "a 2-D array is a set of univariate sequences: its columns are time steps, and sequences of another "
    "length are accepted at predict time, so n_features_in_ counts features per step, not columns"
)
EXPECTED_FAILED_CHECKS = {
    "check_n_features_in": N_FEATURES,
    "check_n_features_in_after_fitting": N_FEATURES,
    "check_classifiers_train": N_FEATURES + " (its accuracy part: test_learns_the_blobs_of_check_classifiers_train)",
}


def _waves(n: int, length: int = 16, seed: int = 0, features: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Noisy sines (label 'sine') and squares ('square') of random phase: (n, length, features)."""
    rng = np.random.default_rng(seed)
    y = np.array(["sine", "square"])[np.arange(n) % 2]
    phase = rng.uniform(0, 2 * np.pi, (n, 1)) + 0.5 * np.arange(length)[None, :]
    wave = np.where(y[:, None] == "sine", np.sin(phase), np.sign(np.sin(phase)))
    x = wave[:, :, None] + 0.3 * rng.standard_normal((n, length, features))
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def fitted() -> tuple[SequenceClassifier, np.ndarray, np.ndarray]:
    x, y = _waves(40, features=2)
    return SequenceClassifier(**FAST, random_state=0).fit(x, y), x, y


@parametrize_with_checks(
    [SequenceClassifier(**FAST)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_scikit_learn_estimator_checks(estimator: SequenceClassifier, check: Any) -> None:
    check(estimator)


@pytest.mark.parametrize("centers", [2, 3])
def test_learns_the_blobs_of_check_classifiers_train(centers: int) -> None:
    """check_classifiers_train's data and bar (accuracy > 0.83), without its predict(X.T) (see above)."""
    x, y = make_blobs(n_samples=300, centers=centers, random_state=0)
    x = StandardScaler().fit_transform(x)
    estimator = SequenceClassifier(**FAST, random_state=0).fit(x, y)
    probabilities = estimator.predict_proba(x)
    assert probabilities.shape == (300, centers)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(estimator.classes_[probabilities.argmax(axis=1)], estimator.predict(x))
    assert estimator.score(x, y) > 0.83


def test_clone_get_params_and_set_params(fitted: tuple[SequenceClassifier, np.ndarray, np.ndarray]) -> None:
    estimator, _, _ = fitted
    copy = clone(estimator)
    assert copy.get_params() == estimator.get_params() and not hasattr(copy, "classes_")
    copy.set_params(hidden_size=4, lr=0.02)
    assert copy.get_params()["hidden_size"] == 4 and copy.get_params()["lr"] == 0.02
    assert estimator.get_params()["hidden_size"] == 8


def test_cross_val_score_grid_search_and_pipeline() -> None:
    x, y = _waves(36)
    univariate = x[:, :, 0]  # (sequences, steps)
    scores = cross_val_score(SequenceClassifier(**FAST, random_state=0), univariate, y, cv=3)
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()
    search = GridSearchCV(SequenceClassifier(**FAST), {"hidden_size": [4, 8]}, cv=2, n_jobs=1).fit(univariate, y)
    assert search.best_params_["hidden_size"] in (4, 8)
    assert set(search.predict(univariate)) <= {"sine", "square"}
    pipeline = make_pipeline(StandardScaler(), SequenceClassifier(**FAST, random_state=0)).fit(univariate, y)
    assert pipeline.score(univariate, y) > 0.5


def test_random_state_makes_two_fits_identical_and_another_differs() -> None:
    x, y = _waves(24)
    first = SequenceClassifier(**FAST, random_state=3).fit(x, y).predict_proba(x)
    again = SequenceClassifier(**FAST, random_state=3).fit(x, y).predict_proba(x)
    other = SequenceClassifier(**FAST, random_state=4).fit(x, y).predict_proba(x)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-4


def test_variable_lengths_as_a_list_and_labels_of_any_type() -> None:
    x, _ = _waves(20, length=30, features=3)
    sequences = [x[i, : 10 + i] for i in range(20)]  # 10 to 29 steps
    y = np.arange(20) % 2 == 0  # booleans
    estimator = SequenceClassifier(**FAST).fit(sequences, y)
    assert estimator.n_features_in_ == 3 and list(estimator.classes_) == [False, True]
    predicted = estimator.predict(sequences[:5])
    assert predicted.dtype == bool and predicted.shape == (5,)
    padded = np.zeros((5, 29, 3), dtype=np.float32)
    for i in range(5):
        padded[i, : 10 + i] = sequences[i]
    # a padded array is another data set: zeros count as steps, so the lengths matter
    assert not np.allclose(estimator.predict_proba(padded), estimator.predict_proba(sequences[:5]))


def test_text_labels_that_spell_integers_keep_the_files_numeric_order() -> None:
    classes, codes = encode_labels(np.array(["10", "2", "1", "2", "10"]), 5)
    assert list(classes) == ["1", "2", "10"] and list(codes) == [2, 1, 0, 1, 2]
    classes, _ = encode_labels(["b", "a", "c"], 3)
    assert list(classes) == ["a", "b", "c"]


def _ragged_object_array() -> np.ndarray:
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((3, 1)), np.zeros((4, 1))
    return ragged


BAD_FITS = {
    "NaN": (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), y), "NaN or inf"),
    "inf": (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.inf, x), y), "NaN or inf"),
    "ragged without a list": (lambda x, y: (_ragged_object_array(), y[:2]), "list of 2-D arrays"),
    "label count": (lambda x, y: (x, y[:-1]), "11 labels for 12 sequences"),
    "one class": (lambda x, y: (x, np.full(len(y), "sine")), "one class"),
    "4-D": (lambda x, y: (x[..., None], y), "4 dimensions"),
    "mixed features in a list": (lambda x, y: ([x[0], x[1][:, :1]], y[:2]), "features per step"),
    "bad option": (lambda x, y: (x, y), "pooling"),
}


@pytest.mark.parametrize("case", list(BAD_FITS))
def test_bad_input_is_a_one_line_value_error_before_training(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_bad, expected = BAD_FITS[case]
    x, y = make_bad(*_waves(12, features=2))
    trained: list[bool] = []
    if case != "bad option":  # the option is refused by the CLI's parser, before its Trainer exists

        def never(*args: Any, **kwargs: Any) -> None:
            trained.append(True)

        monkeypatch.setattr(classifier_module, "fit_on_arrays", never)
    estimator = SequenceClassifier(**FAST, pooling="sideways" if case == "bad option" else None)
    with pytest.raises(ValueError) as raised:
        estimator.fit(x, y)
    assert expected in str(raised.value) and "\n" not in str(raised.value) and not trained
    assert not memory._HELD  # the arrays are let go, whatever happens


def test_an_array_in_aeons_channels_first_layout_is_pointed_out() -> None:
    x, _ = _waves(12, features=2)  # (sequences, steps, features)
    channels_first = x.transpose(0, 2, 1)  # aeon's and sktime's (cases, channels, steps)
    with pytest.warns(UserWarning, match=r"2 steps of 16 features each.*X\.transpose\(0, 2, 1\)"):
        as_sequences(channels_first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert as_sequences(x).x.shape == x.shape  # more steps than features: nothing to point out


def test_features_differing_at_predict_time(fitted: tuple[SequenceClassifier, np.ndarray, np.ndarray]) -> None:
    estimator, x, _ = fitted
    with pytest.raises(ValueError, match=r"^X has 1 features per step, but SequenceClassifier was fitted with 2$"):
        estimator.predict(x[:, :, :1])
    with pytest.raises(ValueError, match="NaN or inf"):
        estimator.predict_proba(np.full((2, 16, 2), np.nan))


def test_quiet_by_default_verbose_on_request(
    in_tmp: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    x, y = _waves(12)
    SequenceClassifier(**FAST).fit(x, y).predict(x)
    out, err = capfd.readouterr()
    assert out == "" and err == "" and "GPU available" not in caplog.text
    SequenceClassifier(**FAST, verbose=True).fit(x, y)
    out, err = capfd.readouterr()
    assert "data.batch_size: auto -> 4" in out and "Epoch [10/10]" in out  # the recipe's and the epochs' lines
    assert "Trainable params" in out + err + caplog.text  # the model summary (a log record)


def test_nothing_is_written_unless_asked(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = in_tmp / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    x, y = _waves(12)
    SequenceClassifier(**FAST).fit(x, y).predict(x)
    assert sorted(p.name for p in in_tmp.iterdir()) == ["tmp"] and not list(scratch.iterdir())


def test_log_dir_gives_the_usual_tensorboard_run(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = _waves(24)
    estimator = SequenceClassifier(**FAST, log_dir=str(tmp_path)).fit(x, y, test_data=(x[:8], y[:8]))
    run = tmp_path / "lightning_logs" / "version_0"
    assert (run / "config.yaml").is_file() and (run / "hparams.yaml").is_file()
    assert list((run / "checkpoints").glob("*.ckpt"))
    assert 0 <= estimator.test_metrics_["test/acc"] <= 1
    events = EventAccumulator(str(run), size_guidance={"images": 0}).Reload()
    assert {CONFUSION_TAG, ROC_TAG} <= set(events.Tags()["images"])  # the test figures
    assert "train/loss" in events.Tags()["scalars"] and "test/acc" in events.Tags()["scalars"]
    assert "_hparams_/session_start_info" in set(events.PluginTagToContent("hparams"))  # the HParams entry
    assert read_confusion_json(run / CONFUSION_FILE)[2] == ["sine", "square"]  # the user's labels, not indices


def test_every_cli_option_is_a_keyword() -> None:
    """The model's and Trainer's options are the estimator's keywords, or set by it for a reason."""
    import lightning.pytorch as pl

    from bigru_lightning.module import BiGRUClassifier

    keywords = list(inspect.signature(SequenceClassifier).parameters)
    assert keywords == [*keyword_flags(), *OWN_KEYWORDS]
    model_options = set(inspect.signature(BiGRUClassifier).parameters) - {"input_size", "num_classes"}
    assert model_options == set(MODEL_OPTIONS)
    trainer_options = set(inspect.signature(pl.Trainer).parameters)
    covered = {flag.split(".", 1)[1] for flag in keyword_flags().values() if flag.startswith("--trainer.")}
    assert trainer_options == covered | set(MANAGED_TRAINER_OPTIONS)


def test_keywords_reach_the_cli_config(in_tmp: Path) -> None:
    waves = str(Path(__file__).resolve().parents[1] / "examples" / "data" / "waves.npz")
    params = {"hidden_size": 5, "conv_channels": [], "batch_size": 7, "max_steps": 3, "optimizer": "SGD", "lr": 0.02}
    argv = ["--data", "FileDataModule", "--data.train_file", waves, "--trainer.logger", "false", *cli_args(params)]
    cli = make_cli(expand_shorthands(argv))
    assert cli.model.hparams["hidden_size"] == 5 and cli.model.hparams["conv_channels"] is None
    assert cli.datamodule.batch_size == 7 and cli.trainer.max_steps == 3
    assert cli.config.optimizer.class_path.endswith("SGD") and cli.config.optimizer.init_args.lr == 0.02


def test_pickles_before_and_after_fit(fitted: tuple[SequenceClassifier, np.ndarray, np.ndarray]) -> None:
    estimator, x, _ = fitted
    assert pickle.loads(pickle.dumps(clone(estimator))).get_params() == estimator.get_params()
    restored = pickle.loads(pickle.dumps(estimator))
    np.testing.assert_array_equal(restored.predict_proba(x), estimator.predict_proba(x))


def test_the_python_api_page_runs(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every ``python`` block of docs/python-api.md, in order, in one namespace."""
    import re

    page = (Path(__file__).resolve().parents[1] / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) >= 3
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "docs/python-api.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "['1' '2'] 1" in out and "test accuracy: " in out
    assert (in_tmp / "unit_test.ckpt").is_file()
