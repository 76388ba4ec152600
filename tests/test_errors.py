"""The catalogue of bad inputs: each exits 2 with one line naming the problem, and touches nothing.

Every case runs ``scripts/fit.py`` (or another script) as a user would, in a folder that already
holds an earlier run. Each case asserts the exact single stderr line (at most 200 characters, starting
with the option the user typed); afterwards that run is byte-for-byte unchanged and no new file or
folder of any kind exists.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import REPO, script_env

from bigru_lightning.cli import SHORTHANDS, accelerators_here
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


# (id, arguments, the exact stderr line after "error: " ({folder}: the working folder), optional setup)
FIT_CASES: list[tuple[str, list[str], str, Setup | None]] = [
    ("hidden_size_zero", ["--model.hidden_size", "0"], "--model.hidden_size: must be a positive integer, got 0", None),
    ("hidden_size_text", ["--model.hidden_size", "abc"], "--model.hidden_size: expected an integer, got abc", None),
    ("num_layers_zero", ["--model.num_layers", "0"], "--model.num_layers: must be a positive integer, got 0", None),
    ("dropout_above_one", ["--model.dropout", "1.5"], "--model.dropout: must be a number in [0, 1), got 1.5", None),
    ("dropout_negative", ["--model.dropout", "-0.1"], "--model.dropout: must be a number in [0, 1), got -0.1", None),
    (
        "pooling_unknown",
        ["--model.pooling", "median"],
        "--model.pooling: accepted: final_state, last_step, mean, max, attention, got median",
        None,
    ),
    (
        "bidirectional_text",
        ["--model.bidirectional", "maybe"],
        "--model.bidirectional: expected true or false, got maybe",
        None,
    ),
    (
        "class_weights_count",
        ["--model.class_weights", "[1.0]"],
        "--model.class_weights: must be 'auto', null or 2 positive numbers; got [1.0]",
        None,
    ),
    (
        "class_weights_negative",
        ["--model.class_weights", "[-1.0, 1.0]"],
        "--model.class_weights: must be 'auto', null or 2 positive numbers; got [-1.0, 1.0]",
        None,
    ),
    (
        "samples_negative",
        ["--data.samples_per_class", "-3"],
        "--data.samples_per_class: must be an integer >= 1; got -3",
        None,
    ),
    (
        "samples_too_few_to_split",
        ["--data.samples_per_class", "1"],
        "--data.samples_per_class: 1 with data.val_fraction=0.2 is too few for a stratified split: "
        "every class needs at least one sequence in train and in val",
        None,
    ),
    ("seq_len_zero", ["--data.seq_len", "0"], "--data.seq_len: must be an integer >= 1; got 0", None),
    ("num_features_zero", ["--data.num_features", "0"], "--data.num_features: must be an integer >= 1; got 0", None),
    (
        "one_class",
        ["--data.means", "[1.0]"],
        "--data.means: must list one mean per class, at least two classes; got [1.0]",
        None,
    ),
    ("mean_not_finite", ["--data.means", "[.nan, 1.0]"], "--data.means: must be finite numbers; got [nan, 1.0]", None),
    (
        "mean_per_feature_mismatch",
        ["--data.num_features", "2", "--data.means", "[[1, 2, 3], 0]"],
        "--data.means: [0] has 3 values; give a scalar or one value per feature (data.num_features=2)",
        None,
    ),
    ("std_zero", ["--data.std", "0"], "--data.std: must be finite and > 0 (one value or one per class); got 0.0", None),
    ("phi_one", ["--data.phi", "1.0"], "--data.phi: must lie in (-1, 1) (one value or one per class); got 1.0", None),
    (
        "priors_not_summing",
        ["--data.class_priors", "[0.9, 0.9]"],
        "--data.class_priors: must be 2 positive numbers summing to 1 (one per entry of data.means); got [0.9, 0.9]",
        None,
    ),
    (
        "val_fraction_zero",
        ["--data.val_fraction", "0"],
        "--data.val_fraction: must be a number in (0, 1); got 0.0",
        None,
    ),
    (
        "batch_size_zero",
        ["--data.batch_size", "0"],
        "--data.batch_size: must be a positive integer or null (whole split); got 0",
        None,
    ),
    ("seed_negative", ["--data.seed", "-1"], "--data.seed: must be a non-negative integer; got -1", None),
    (
        "test_samples_zero",
        ["--data.test_samples_per_class", "0"],
        "--data.test_samples_per_class: must be an integer >= 1; got 0",
        None,
    ),
    (
        "unknown_datamodule",
        ["--data", "NoSuchDataModule"],
        "--data: unknown data module NoSuchDataModule; e.g. GaussianDataModule, FileDataModule (or a dotted path)",
        None,
    ),
    ("unknown_option", ["--no_such_option", "1"], "--no_such_option: unknown option (see --help)", None),
    (
        "max_epochs_text",
        ["--trainer.max_epochs", "ten"],
        "--trainer.max_epochs: expected an integer or null, got ten",
        None,
    ),
    (
        "tpu_missing",
        ["--accelerator", "tpu"],
        "--trainer.accelerator: expected one this machine has ({here}), got tpu",
        None,
    ),
    (
        "accelerator_typo",
        ["--accelerator", "gpuu"],
        "--trainer.accelerator: expected one this machine has ({here}), got gpuu",
        None,
    ),
    (
        "optimizer_unknown",
        ["--optimizer", "NoSuchOptimizer"],
        "--optimizer: unknown optimizer NoSuchOptimizer; e.g. Adam, AdamW, SGD "
        "(any torch.optim class or a dotted path)",
        None,
    ),
    (
        "optimizer_negative_lr",
        ["--optimizer.lr", "-1"],
        "--optimizer.lr: invalid learning rate for torch.optim, got -1.0",
        None,
    ),
    ("config_missing", ["--config", "missing.yaml"], "--config: no such file: {folder}/missing.yaml", None),
    (
        "config_not_yaml",
        ["--config", "broken.yaml"],
        "--config broken.yaml: not valid YAML (expected ',' or ']', but got ':' at line 2)",
        _write("broken.yaml", b"model: [unclosed\n  : -"),
    ),
    (
        "config_unknown_key",
        ["--config", "extra.yaml"],
        "--model.hidden_sise: unknown option (see --help)",
        _write("extra.yaml", b"model:\n  hidden_sise: 4\n"),
    ),
    ("ckpt_missing", ["--ckpt_path", "missing.ckpt"], "--ckpt_path missing.ckpt: no such checkpoint file", None),
    (
        "ckpt_empty",
        ["--ckpt_path", "empty.ckpt"],
        "--ckpt_path empty.ckpt: the file is empty (give a .ckpt written by scripts/fit.py)",
        _write("empty.ckpt", b""),
    ),
    (
        "ckpt_not_a_checkpoint",
        ["--ckpt_path", "notes.txt"],
        "--ckpt_path notes.txt: not a PyTorch checkpoint, or truncated (give a .ckpt written by scripts/fit.py)",
        _write("notes.txt", b"hello, not a ckpt"),
    ),
    (
        "ckpt_truncated",
        ["--ckpt_path", "truncated.ckpt"],
        "--ckpt_path truncated.ckpt: not a PyTorch checkpoint, or truncated (give a .ckpt written by scripts/fit.py)",
        _truncated_checkpoint,
    ),
    (
        "ckpt_without_state_dict",
        ["--ckpt_path", "tensors.ckpt"],
        "--ckpt_path tensors.ckpt: not a Lightning checkpoint (no state_dict); give a .ckpt written by scripts/fit.py",
        _plain_tensor_file,
    ),
    (
        "ckpt_other_model",
        ["--model.hidden_size", "8", "--ckpt_path", "lightning_logs/version_0/checkpoints/last.ckpt"],
        "--ckpt_path lightning_logs/version_0/checkpoints/last.ckpt: made for another model: hidden_size=32 (now 8)",
        None,
    ),
    # Mistakes inside nested class options (jsonargparse reports these in 400-650 characters)
    ("nested_int_given_float", ["--data.seq_len", "1.5"], "--data.seq_len: expected an integer, got 1.5", None),
    (
        "nested_option_of_another_class",
        ["--data", "FileDataModule", "--data.seq_len", "8"],
        "--data.seq_len: not an option of FileDataModule (see --data.help FileDataModule)",
        None,
    ),
    (
        "nested_unknown_option",
        ["--optimizer.momentun", "0.9"],
        "--optimizer.momentun: not an option of Adam (see --optimizer.help Adam)",
        None,
    ),
    ("nested_number_given_text", ["--optimizer.lr", "fast"], "--optimizer.lr: expected a number, got fast", None),
    (
        "threads_zero",
        ["--threads", "0"],
        "--threads: accepted: a whole number of CPU threads, at least 1, or null; got 0",
        None,
    ),
    ("threads_text", ["--threads", "two"], "--threads: expected an integer or null, got two", None),
    (
        "precision_unknown",
        ["--trainer.precision", "7"],
        "--trainer.precision: accepted: 16-true, 32-true, 64-true, 16-mixed, bf16-true, bf16-mixed, ..., got 7",
        None,
    ),
    (
        "precision_shorthand_unknown",
        ["--precision", "half"],
        "--trainer.precision: accepted: 16-true, 32-true, 64-true, 16-mixed, bf16-true, bf16-mixed, ..., got half",
        None,
    ),
    (
        "scheduler_missing_argument",
        ["--lr_scheduler", "StepLR"],
        "--lr_scheduler: StepLR needs --lr_scheduler.step_size",
        None,
    ),
    (
        "scheduler_unknown",
        ["--lr_scheduler", "NoSuchScheduler"],
        "--lr_scheduler: unknown scheduler NoSuchScheduler; e.g. StepLR, CosineAnnealingLR, ReduceLROnPlateau "
        "(any torch.optim.lr_scheduler class)",
        None,
    ),
    (
        "model_given_a_name",
        ["--model", "Transformer"],
        "--model: expected options such as --model.hidden_size 64 (or a YAML mapping), got Transformer",
        None,
    ),
    ("trainer_unknown_option", ["--trainer.max_epoks", "3"], "--trainer.max_epoks: unknown option (see --help)", None),
    (
        "checkpoint_every_n_text",
        ["--checkpoint.every_n_train_steps", "often"],
        "--checkpoint.every_n_train_steps: expected an integer or null, got often",
        None,
    ),
    (
        "checkpoint_mode_unknown",
        ["--checkpoint.mode", "sideways"],
        "--checkpoint.mode: `mode` can be min, max but got sideways",
        None,
    ),
]
if not torch.cuda.is_available():  # on a machine with a GPU, --accelerator gpu is not a mistake
    FIT_CASES.append(
        (
            "gpu_missing",
            ["--accelerator", "gpu"],
            "--trainer.accelerator: expected one this machine has ({here}), got gpu",
            None,
        )
    )
MAX_LINE = 200


def _snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` (folders too: an empty new version_N counts) with its content's hash."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
    }


def _typed_options(args: list[str]) -> set[str]:
    """The options as the user typed them, with the ``--trainer.*`` form of each shorthand."""
    names = {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}
    return names | {f"--trainer.{name[2:]}" for name in names if name[2:] in SHORTHANDS}


def check_line_rules(line: str, args: list[str]) -> None:
    """The catalogue's two rules: at most 200 characters, and the line starts with an option the user gave.

    A nested option counts as given when its class option was (``--data FileDataModule`` names
    ``--data.seq_len``), and so does a key of a ``--config`` file.
    """
    assert len(line) <= MAX_LINE, (len(line), line)
    assert line.startswith("error: --"), line
    option = re.match(r"error: (--[\w.]+)", line).group(1)  # type: ignore[union-attr]
    typed = _typed_options(args)
    given = option in typed or option.split(".")[0] in typed or "--config" in typed
    assert given, (option, args)


def test_every_catalogue_line_is_short_and_names_the_option() -> None:
    for _, args, line, _ in FIT_CASES:
        check_line_rules("error: " + line.format(folder="/home/user/work", here="auto, cpu"), args)
    for _, _, args, line, _ in OTHER_CASES:
        check_line_rules("error: " + line, args)


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


def _check(folder: Path, before: dict[str, str], code: object, stderr: str, expected: str, args: list[str]) -> str:
    assert code == 2, (code, stderr[-3000:])
    lines = stderr.strip().splitlines()
    expected_line = "error: " + expected.format(folder=folder.resolve(), here=", ".join(accelerators_here()))
    assert lines == [expected_line]  # exactly one line, this one
    check_line_rules(lines[0], args)
    assert _snapshot(folder) == before  # nothing modified, deleted or added (no empty version_N folder)
    return lines[0]


def run_and_check(folder: Path, command: list[str], expected: str) -> str:
    """Run ``command`` in ``folder``; assert exit 2, a one-line error naming ``expected``, nothing touched."""
    before = _snapshot(folder)
    result = subprocess.run(command, cwd=folder, env=script_env(), capture_output=True, text=True, timeout=300)
    return _check(folder, before, result.returncode, result.stderr, expected, command)


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
    return _check(folder, before, exit_info.value.code, capsys.readouterr().err, expected, args)


def copy_of(earlier_run: Path, folder: Path) -> Path:
    """A copy of the earlier run's folder (empty folders too), to be left untouched by a failing command."""
    folder.mkdir()
    for source in earlier_run.rglob("*"):
        if source.is_dir():
            (folder / source.relative_to(earlier_run)).mkdir(parents=True, exist_ok=True)
        elif source.is_file():
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


@pytest.mark.parametrize("case", ["pooling_unknown", "ckpt_truncated", "precision_unknown", "samples_negative"])
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

# Data files through fit, and the other two scripts: (id, entry, arguments, the exact line after "error: ", setup)
OTHER_CASES: list[tuple[str, str, list[str], str, Setup | None]] = [
    (
        "train_file_missing",
        "fit",
        ["--data", "FileDataModule", "--data.train_file", "none.npz"],
        "--data.train_file: none.npz: no such file",
        None,
    ),
    (
        "train_file_unknown_suffix",
        "fit",
        ["--data", "FileDataModule", "--data.train_file", "data.xlsx"],
        "--data.train_file: data.xlsx: unknown file format '.xlsx'; accepted: .npz (X, y), .csv or .parquet "
        "(columns sequence_id, label[, time], features), .ts (UCR/UEA)",
        _write("data.xlsx", b"PK"),
    ),
    (
        "train_file_empty_csv",
        "fit",
        ["--data", "FileDataModule", "--data.train_file", "empty.csv"],
        "--data.train_file: empty.csv: the file is empty; "
        "accepted: .npz (X, y), .csv or .parquet (columns sequence_id, label[, time], features), .ts (UCR/UEA)",
        _write("empty.csv", b""),
    ),
    (
        "train_file_non_numeric_csv",
        "fit",
        ["--data", "FileDataModule", "--data.train_file", "words.csv"],
        "--data.train_file: words.csv: line 3, column 'x': 'oops' is not a number "
        "(every column besides sequence_id, label and time is a numeric feature)",
        _write("words.csv", b"sequence_id,label,x\na,0,1.0\na,0,oops\nb,1,2.0\n"),
    ),
    (
        "predict_ckpt_missing",
        "predict",
        ["--ckpt_path", "none.ckpt", "--input", "in.csv", "--output", "p.csv"],
        "--ckpt_path none.ckpt: no such file (give a .ckpt written by scripts/fit.py)",
        None,
    ),
    (
        "predict_input_missing",
        "predict",
        ["--ckpt_path", LAST, "--input", "none.csv", "--output", "p.csv"],
        "--input none.csv: no such file",
        None,
    ),
    (
        "predict_output_exists",
        "predict",
        ["--ckpt_path", LAST, "--input", "seqs.csv", "--output", "seqs.csv"],
        "--output seqs.csv: already exists; choose another path or add --overwrite",
        _write("seqs.csv", b"sequence_id,x\na,1.0\na,2.0\n"),
    ),
    (
        "predict_feature_mismatch",
        "predict",
        ["--ckpt_path", LAST, "--input", "two.csv", "--output", "p.csv"],
        "--input two.csv: 2 features per step, but the model in lightning_logs/version_0/checkpoints/last.ckpt "
        "was trained on 1",
        _write("two.csv", b"sequence_id,x,z\na,1.0,2.0\na,2.0,3.0\n"),
    ),
    (
        "export_unknown_format",
        "export",
        ["--ckpt_path", LAST, "--format", "tflite", "--output", "m.tflite"],
        "--format tflite: unknown export format (accepted: onnx, torchscript)",
        None,
    ),
    (
        "export_ckpt_empty",
        "export",
        ["--ckpt_path", "empty.ckpt", "--format", "onnx", "--output", "m.onnx"],
        "--ckpt_path empty.ckpt: the file is empty (give a .ckpt written by scripts/fit.py)",
        _write("empty.ckpt", b""),
    ),
    (
        "export_output_exists",
        "export",
        ["--ckpt_path", LAST, "--format", "torchscript", "--output", "keep.pt"],
        "--output keep.pt: already exists; choose another path or add --overwrite",
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
