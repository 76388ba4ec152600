"""The catalogue of bad inputs: each exits 2 with one line naming the problem, and touches nothing.

Every case runs ``scripts/fit.py`` (or another script) as a user would, in a folder that already
holds an earlier run; afterwards that run is byte-for-byte unchanged and no new ``version_N`` exists.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import REPO, script_env

from bigru_lightning.cli import main as fit_main

Setup = Callable[[Path], None]


def _write(name: str, content: bytes) -> Setup:
    def setup(folder: Path) -> None:
        (folder / name).write_bytes(content)

    return setup


def _truncated_checkpoint(folder: Path) -> None:
    good = (folder / "lightning_logs/version_0/checkpoints/last.ckpt").read_bytes()
    (folder / "truncated.ckpt").write_bytes(good[: len(good) // 2])


def _plain_tensor_file(folder: Path) -> None:
    torch.save({"weights": torch.ones(2)}, folder / "tensors.ckpt")


# (id, arguments, text the last stderr line must contain, optional setup)
FIT_CASES: list[tuple[str, list[str], str, Setup | None]] = [
    ("hidden_size_zero", ["--model.hidden_size", "0"], "model.hidden_size", None),
    ("hidden_size_text", ["--model.hidden_size", "abc"], "model.hidden_size", None),
    ("num_layers_zero", ["--model.num_layers", "0"], "model.num_layers", None),
    ("dropout_above_one", ["--model.dropout", "1.5"], "model.dropout", None),
    ("dropout_negative", ["--model.dropout", "-0.1"], "model.dropout", None),
    ("pooling_unknown", ["--model.pooling", "median"], "model.pooling", None),
    ("bidirectional_text", ["--model.bidirectional", "maybe"], "model.bidirectional", None),
    ("class_weights_count", ["--model.class_weights", "[1.0]"], "model.class_weights", None),
    ("class_weights_negative", ["--model.class_weights", "[-1.0, 1.0]"], "model.class_weights", None),
    ("samples_negative", ["--data.samples_per_class", "-3"], "data.samples_per_class", None),
    ("samples_too_few_to_split", ["--data.samples_per_class", "1"], "data.samples_per_class", None),
    ("seq_len_zero", ["--data.seq_len", "0"], "data.seq_len", None),
    ("num_features_zero", ["--data.num_features", "0"], "data.num_features", None),
    ("one_class", ["--data.means", "[1.0]"], "data.means", None),
    ("mean_not_finite", ["--data.means", "[.nan, 1.0]"], "data.means", None),
    ("mean_per_feature_mismatch", ["--data.num_features", "2", "--data.means", "[[1, 2, 3], 0]"], "data.means", None),
    ("std_zero", ["--data.std", "0"], "data.std", None),
    ("phi_one", ["--data.phi", "1.0"], "data.phi", None),
    ("priors_not_summing", ["--data.class_priors", "[0.9, 0.9]"], "data.class_priors", None),
    ("val_fraction_zero", ["--data.val_fraction", "0"], "data.val_fraction", None),
    ("batch_size_zero", ["--data.batch_size", "0"], "data.batch_size", None),
    ("seed_negative", ["--data.seed", "-1"], "data.seed", None),
    ("test_samples_zero", ["--data.test_samples_per_class", "0"], "data.test_samples_per_class", None),
    ("unknown_datamodule", ["--data", "NoSuchDataModule"], "NoSuchDataModule", None),
    ("unknown_option", ["--no_such_option", "1"], "no_such_option", None),
    ("max_epochs_text", ["--trainer.max_epochs", "ten"], "trainer.max_epochs", None),
    ("gpu_missing", ["--accelerator", "gpu"], "--trainer.accelerator gpu", None),
    ("optimizer_unknown", ["--optimizer", "NoSuchOptimizer"], "NoSuchOptimizer", None),
    ("optimizer_negative_lr", ["--optimizer.lr", "-1"], "learning rate", None),
    ("config_missing", ["--config", "missing.yaml"], "missing.yaml", None),
    ("config_not_yaml", ["--config", "broken.yaml"], "broken.yaml", _write("broken.yaml", b"model: [unclosed\n  : -")),
    (
        "config_unknown_key",
        ["--config", "extra.yaml"],
        "hidden_sise",
        _write("extra.yaml", b"model:\n  hidden_sise: 4\n"),
    ),
    ("ckpt_missing", ["--ckpt_path", "missing.ckpt"], "missing.ckpt", None),
    ("ckpt_empty", ["--ckpt_path", "empty.ckpt"], "empty", _write("empty.ckpt", b"")),
    ("ckpt_not_a_checkpoint", ["--ckpt_path", "notes.txt"], "notes.txt", _write("notes.txt", b"hello, not a ckpt")),
    ("ckpt_truncated", ["--ckpt_path", "truncated.ckpt"], "truncated.ckpt", _truncated_checkpoint),
    ("ckpt_without_state_dict", ["--ckpt_path", "tensors.ckpt"], "not a Lightning checkpoint", _plain_tensor_file),
    (
        "ckpt_other_model",
        ["--model.hidden_size", "8", "--ckpt_path", "lightning_logs/version_0/checkpoints/last.ckpt"],
        "hidden_size=32 (now 8)",
        None,
    ),
]


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding one finished run (version_0), as a user's working folder would."""
    folder = tmp_path_factory.mktemp("earlier")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fit.py"), "--trainer.max_epochs", "1"],
        cwd=folder,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return folder


def _check(folder: Path, before: dict[str, str], code: object, stderr: str, expected: str) -> str:
    assert code == 2, (code, stderr[-3000:])
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), stderr[-3000:]
    assert expected in last, last
    assert _snapshot(folder) == before  # nothing modified, deleted or added (no empty version_N)
    return last


def run_and_check(folder: Path, command: list[str], expected: str) -> str:
    """Run ``command`` in ``folder``; assert exit 2, a one-line error naming ``expected``, nothing touched."""
    before = _snapshot(folder)
    result = subprocess.run(command, cwd=folder, env=script_env(), capture_output=True, text=True, timeout=300)
    return _check(folder, before, result.returncode, result.stderr, expected)


def main_and_check(
    folder: Path,
    entry: Callable[[list[str]], object],
    args: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """Like :func:`run_and_check`, in-process through ``entry(args)`` (fast; the same code path as the script)."""
    monkeypatch.chdir(folder)
    before = _snapshot(folder)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        entry(args)
    return _check(folder, before, exit_info.value.code, capsys.readouterr().err, expected)


def copy_of(earlier_run: Path, folder: Path) -> Path:
    """A copy of the earlier run's folder, to be left untouched by a failing command."""
    folder.mkdir()
    for source in earlier_run.rglob("*"):
        if source.is_file():
            target = folder / source.relative_to(earlier_run)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    return folder


@pytest.mark.parametrize(("args", "expected", "setup"), [c[1:] for c in FIT_CASES], ids=[c[0] for c in FIT_CASES])
def test_fit_refuses_bad_input(
    earlier_run: Path,
    tmp_path: Path,
    args: list[str],
    expected: str,
    setup: Setup | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = copy_of(earlier_run, tmp_path / "work")
    if setup is not None:
        setup(folder)
    main_and_check(folder, fit_main, args, expected, capsys, monkeypatch)


@pytest.mark.parametrize("case", ["pooling_unknown", "ckpt_truncated"])
def test_fit_script_exit_status_as_a_process(earlier_run: Path, tmp_path: Path, case: str) -> None:
    _, args, expected, setup = next(c for c in FIT_CASES if c[0] == case)
    folder = copy_of(earlier_run, tmp_path / "work")
    if setup is not None:
        setup(folder)
    run_and_check(folder, [sys.executable, str(REPO / "scripts" / "fit.py"), *args], expected)


def test_debug_env_shows_the_traceback(tmp_path: Path) -> None:
    env = script_env()
    env["BIGRU_DEBUG"] = "1"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fit.py"), "--model.dropout", "1.5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "model.dropout" in result.stderr


LAST = "lightning_logs/version_0/checkpoints/last.ckpt"

# Data files through fit, and the other two scripts: (id, entry, arguments, expected text, setup)
OTHER_CASES: list[tuple[str, str, list[str], str, Setup | None]] = [
    ("train_file_missing", "fit", ["--data", "FileDataModule", "--data.train_file", "none.npz"], "none.npz", None),
    (
        "train_file_unknown_suffix",
        "fit",
        ["--data", "FileDataModule", "--data.train_file", "data.parquet"],
        "data.parquet",
        _write("data.parquet", b"PAR1"),
    ),
    (
        "train_file_empty_csv",
        "fit",
        ["--data", "FileDataModule", "--data.train_file", "empty.csv"],
        "empty.csv",
        _write("empty.csv", b""),
    ),
    (
        "train_file_non_numeric_csv",
        "fit",
        ["--data", "FileDataModule", "--data.train_file", "words.csv"],
        "words.csv",
        _write("words.csv", b"sequence_id,label,x\na,0,1.0\na,0,oops\nb,1,2.0\n"),
    ),
    (
        "predict_ckpt_missing",
        "predict",
        ["--ckpt_path", "none.ckpt", "--input", "in.csv", "--output", "p.csv"],
        "none.ckpt",
        None,
    ),
    (
        "predict_input_missing",
        "predict",
        ["--ckpt_path", LAST, "--input", "none.csv", "--output", "p.csv"],
        "none.csv",
        None,
    ),
    (
        "predict_output_exists",
        "predict",
        ["--ckpt_path", LAST, "--input", "seqs.csv", "--output", "seqs.csv"],
        "seqs.csv",
        _write("seqs.csv", b"sequence_id,x\na,1.0\na,2.0\n"),
    ),
    (
        "predict_feature_mismatch",
        "predict",
        ["--ckpt_path", LAST, "--input", "two.csv", "--output", "p.csv"],
        "feature",
        _write("two.csv", b"sequence_id,x,z\na,1.0,2.0\na,2.0,3.0\n"),
    ),
    (
        "export_unknown_format",
        "export",
        ["--ckpt_path", LAST, "--format", "tflite", "--output", "m.tflite"],
        "tflite",
        None,
    ),
    (
        "export_ckpt_empty",
        "export",
        ["--ckpt_path", "empty.ckpt", "--format", "onnx", "--output", "m.onnx"],
        "empty.ckpt",
        _write("empty.ckpt", b""),
    ),
    (
        "export_output_exists",
        "export",
        ["--ckpt_path", LAST, "--format", "torchscript", "--output", "keep.pt"],
        "keep.pt",
        _write("keep.pt", b"user data"),
    ),
]


def _entry(name: str) -> Callable[[list[str]], object]:
    if name == "fit":
        return fit_main
    if name == "predict":
        from bigru_lightning.predict import main as predict_main

        return predict_main
    from bigru_lightning.export import main as export_main

    return export_main


@pytest.mark.parametrize(
    ("entry", "args", "expected", "setup"), [c[1:] for c in OTHER_CASES], ids=[c[0] for c in OTHER_CASES]
)
def test_files_predict_and_export_refuse_bad_input(
    earlier_run: Path,
    tmp_path: Path,
    entry: str,
    args: list[str],
    expected: str,
    setup: Setup | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = copy_of(earlier_run, tmp_path / "work")
    if setup is not None:
        setup(folder)
    main_and_check(folder, _entry(entry), args, expected, capsys, monkeypatch)
