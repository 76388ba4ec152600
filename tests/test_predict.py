"""End to end: fit on a file through the CLI, predict to CSV; checkpoint safety and predict's errors."""

from __future__ import annotations

import csv
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, script_env

from bigru_lightning import predict as predict_module
from bigru_lightning.cli import main as fit_main
from bigru_lightning.data import TensorBatcher, read_sequences
from bigru_lightning.module import BiGRUClassifier
from bigru_lightning.predict import main as predict_main

LABELS = ("low", "high", "mid")


def _write_long_csv(path: Path, n: int, seed: int, labels: bool = True, features: int = 2) -> Path:
    """Variable-length sequences whose level depends on the (string) label."""
    rng = np.random.default_rng(seed)
    level = {"low": -1.0, "mid": 0.0, "high": 1.0}
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        names = [f"f{i}" for i in range(features)]
        writer.writerow(["sequence_id", *(["label"] if labels else []), "time", *names])
        for i in range(n):
            label = LABELS[i % 3]
            for t in range(int(rng.integers(3, 9))):
                values = level[label] + 0.5 * rng.standard_normal(features)
                writer.writerow([f"seq{i}", *([label] if labels else []), t, *np.round(values, 4)])
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model fitted through the CLI on a CSV file with string labels and variable lengths."""
    folder = tmp_path_factory.mktemp("fit")
    train = _write_long_csv(folder / "train.csv", 60, seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        metrics = fit_main(
            [
                "--data",
                "FileDataModule",
                "--data.train_file",
                str(train),
                "--data.batch_size",
                "16",
                "--model.hidden_size",
                "8",
                "--trainer.max_epochs",
                "2",
                "--trainer.enable_model_summary",
                "false",
            ]
        )
    assert "test/acc" in metrics
    ckpt = folder / "lightning_logs/version_0/checkpoints/last.ckpt"
    assert ckpt.is_file()
    return ckpt


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def test_predict_writes_labels_and_probabilities_matching_predict_step(trained: Path, tmp_path: Path) -> None:
    new = _write_long_csv(tmp_path / "new.csv", 9, seed=1, labels=False)
    output = tmp_path / "preds.csv"
    predict_main(["--ckpt_path", str(trained), "--input", str(new), "--output", str(output)])
    header, rows = _read_rows(output)
    assert header == ["sequence_id", "predicted_label", "prob_high", "prob_low", "prob_mid"]  # sorted names
    assert [row[0] for row in rows] == [f"seq{i}" for i in range(9)]
    probs = np.array([[float(v) for v in row[2:]] for row in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert [row[1] for row in rows] == [["high", "low", "mid"][k] for k in probs.argmax(axis=1)]
    # The same numbers as the model's own predict_step, run by Lightning's Trainer on the raw data.
    model = BiGRUClassifier.load_from_checkpoint(trained, map_location="cpu", weights_only=True)
    assert model.label_names == ["high", "low", "mid"]
    data = read_sequences(new, require_labels=False)
    assert data.lengths is not None
    batcher = TensorBatcher(
        (torch.from_numpy(data.x), torch.zeros(9, dtype=torch.int64), torch.from_numpy(data.lengths)), batch_size=4
    )
    from lightning.pytorch import Trainer

    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    expected = torch.cat(trainer.predict(model, dataloaders=batcher)).numpy()  # type: ignore[arg-type]
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    # Standardisation came from the checkpoint: the buffers are the training split's statistics, not 0/1.
    assert not torch.allclose(model.feature_std, torch.ones(2))


def test_predict_npz_without_ids_uses_the_index(trained: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", X=np.random.default_rng(2).standard_normal((5, 4, 2)).astype(np.float32))
    output = tmp_path / "p.csv"
    predict_main(["--ckpt_path", str(trained), "--input", str(tmp_path / "x.npz"), "--output", str(output)])
    _, rows = _read_rows(output)
    assert [row[0] for row in rows] == ["0", "1", "2", "3", "4"]


def test_class_weights_auto_end_to_end(in_tmp: Path) -> None:
    rng = np.random.default_rng(3)
    y = np.array(["rare"] * 10 + ["common"] * 40)
    x = (rng.standard_normal((50, 5, 1)) + (y == "rare")[:, None, None]).astype(np.float32)
    np.savez(in_tmp / "imbalanced.npz", X=x, y=y)
    fit_main(
        [
            "--data",
            "FileDataModule",
            "--data.train_file",
            "imbalanced.npz",
            "--model.class_weights",
            "auto",
            "--model.hidden_size",
            "4",
            "--trainer.max_epochs",
            "1",
            "--trainer.enable_model_summary",
            "false",
        ]
    )
    model = BiGRUClassifier.load_from_checkpoint(
        in_tmp / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True
    )
    assert model.label_names == ["common", "rare"]
    # Training split (60% of 50, stratified): 24 common, 6 rare -> weights 30/(2*24), 30/(2*6).
    torch.testing.assert_close(model.class_weight, torch.tensor([30 / 48, 30 / 12]))


class _Payload:
    """Unpickling this creates a file: proof that the payload ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return (Path.touch, (Path(self.marker),))  # type: ignore[return-value]


def test_pickle_payload_is_refused_and_never_runs(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "payload_ran"
    checkpoint = torch.load(trained, weights_only=True)
    checkpoint["extra"] = _Payload(str(marker))
    evil = tmp_path / "evil.ckpt"
    torch.save(checkpoint, evil)
    torch.load(evil, weights_only=False)  # sanity: an unsafe load does run it
    assert marker.exists()
    marker.unlink()
    with pytest.raises(SystemExit) as caught:
        predict_main(
            ["--ckpt_path", str(evil), "--input", str(tmp_path / "any.csv"), "--output", str(tmp_path / "o.csv")]
        )
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --ckpt_path {evil}: refused: it holds pickled Python objects"), err
    assert not marker.exists()
    assert not (tmp_path / "o.csv").exists()


def _bad_ckpt(kind: str, folder: Path, trained: Path) -> Path:
    path = folder / f"{kind}.ckpt"
    if kind == "missing":
        return path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(trained.read_bytes()[:2000])
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "plain_pickle":
        path.write_bytes(pickle.dumps({"a": 1}))
    elif kind == "state_dict_only":
        torch.save({"weight": torch.zeros(2)}, path)
    elif kind == "incompatible":
        checkpoint = torch.load(trained, weights_only=True)
        checkpoint["hyper_parameters"]["hidden_size"] = 5  # weights no longer fit
        torch.save(checkpoint, path)
    return path


CKPT_ERRORS = {
    "missing": "no such file",
    "empty": "the file is empty",
    "truncated": "not a PyTorch checkpoint, or truncated",
    "text": "not a PyTorch checkpoint",
    "plain_pickle": "not a PyTorch checkpoint",
    "state_dict_only": "not a Lightning checkpoint (no state_dict)",
    "incompatible": "incompatible checkpoint",
}


@pytest.mark.parametrize("kind", sorted(CKPT_ERRORS))
def test_bad_checkpoint(kind: str, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = _write_long_csv(tmp_path / "new.csv", 3, seed=4, labels=False)
    ckpt = _bad_ckpt(kind, tmp_path, trained)
    with pytest.raises(SystemExit) as caught:
        predict_main(["--ckpt_path", str(ckpt), "--input", str(new), "--output", str(tmp_path / "o.csv")])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --ckpt_path {ckpt}: ") and CKPT_ERRORS[kind] in err, err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()


def test_predict_input_errors_and_no_clobbering(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*args: str) -> str:
        with pytest.raises(SystemExit) as caught:
            predict_main(["--ckpt_path", str(trained), *args])
        assert caught.value.code == 2
        return capsys.readouterr().err.strip()

    wide = _write_long_csv(tmp_path / "wide.csv", 3, seed=5, labels=False, features=3)
    out = tmp_path / "o.csv"
    assert "--input" in run("--input", str(wide), "--output", str(out))
    assert "3 features per step, but the model" in run("--input", str(wide), "--output", str(out))
    assert not out.exists()
    assert "unknown file format '.json'" in run("--input", str(tmp_path / "x.json"), "--output", str(out))
    assert "--input" in run("--input", str(tmp_path / "absent.csv"), "--output", str(out))
    mine = tmp_path / "mine.csv"
    mine.write_text("precious\n")
    good = _write_long_csv(tmp_path / "good.csv", 3, seed=6, labels=False)
    message = run("--input", str(good), "--output", str(mine))
    assert message == f"error: --output {mine}: already exists; choose another path or add --overwrite"
    assert mine.read_text() == "precious\n"
    assert "--output" in run("--input", str(good), "--output", str(tmp_path / "no_dir" / "o.csv"))
    assert "required: --input" in run("--output", str(out))
    assert "--batch_size must be a positive integer" in run(
        "--input", str(good), "--output", str(out), "--batch_size", "0"
    )
    predict_main(["--ckpt_path", str(trained), "--input", str(good), "--output", str(mine), "--overwrite"])
    assert mine.read_text().startswith("sequence_id,predicted_label,")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_predict_script_exits_2_without_traceback(trained: Path, tmp_path: Path) -> None:
    new = _write_long_csv(tmp_path / "new.csv", 2, seed=7, labels=False)
    (tmp_path / "p.csv").write_text("mine\n")
    command = [sys.executable, str(REPO / "scripts/predict.py"), "--ckpt_path", str(trained), "--input", str(new)]
    result = subprocess.run(
        [*command, "--output", "p.csv"], cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --output p.csv: already exists")
    assert (tmp_path / "p.csv").read_text() == "mine\n"


def test_parquet_output_has_the_same_rows_as_the_csv(trained: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    new = _write_long_csv(tmp_path / "new.csv", 7, seed=8, labels=False)
    predict_main(["--ckpt_path", str(trained), "--input", str(new), "--output", str(tmp_path / "p.csv")])
    predict_main(["--ckpt_path", str(trained), "--input", str(new), "--output", str(tmp_path / "p.parquet")])
    header, rows = _read_rows(tmp_path / "p.csv")
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.column_names == header
    assert table.column("sequence_id").to_pylist() == [row[0] for row in rows]
    assert table.column("predicted_label").to_pylist() == [row[1] for row in rows]
    for k, name in enumerate(header[2:]):
        np.testing.assert_allclose(table.column(name).to_numpy(), [float(row[2 + k]) for row in rows], atol=1e-7)


def test_rows_are_written_batch_by_batch(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Memory stays bounded: each batch goes to the file when it is predicted, not all at the end."""
    blocks: list[int] = []
    real_write = predict_module.CsvSink.write

    def recording_write(self: predict_module.CsvSink, ids: list[str], predicted: list[str], probs: np.ndarray) -> None:
        blocks.append(len(ids))
        real_write(self, ids, predicted, probs)

    monkeypatch.setattr(predict_module.CsvSink, "write", recording_write)
    new = _write_long_csv(tmp_path / "new.csv", 10, seed=9, labels=False)
    output = tmp_path / "p.csv"
    predict_main(["--ckpt_path", str(trained), "--input", str(new), "--output", str(output), "--batch_size", "4"])
    assert blocks == [4, 4, 2]
    assert capsys.readouterr().out.strip() == f"Wrote 10 predictions to {output}"


@pytest.mark.parametrize("accelerator", ["gpux", *([] if torch.cuda.is_available() else ["gpu"])])
def test_unknown_or_missing_accelerator_is_a_one_line_error(
    accelerator: str, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = _write_long_csv(tmp_path / "new.csv", 2, seed=10, labels=False)
    with pytest.raises(SystemExit) as caught:
        predict_main(
            [
                "--ckpt_path",
                str(trained),
                "--input",
                str(new),
                "--output",
                str(tmp_path / "o.csv"),
                "--accelerator",
                accelerator,
            ]
        )
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    from bigru_lightning.cli import accelerators_here

    here = ", ".join(accelerators_here())
    assert err == f"error: --accelerator: expected one this machine has ({here}), got {accelerator}", err
    assert not (tmp_path / "o.csv").exists()


def test_two_processes_write_the_same_file_as_one(trained: Path, tmp_path: Path) -> None:
    """--devices 2 (DDP, here on CPU): each rank predicts its share, the output keeps the input's order."""
    new = _write_long_csv(tmp_path / "new.csv", 11, seed=11, labels=False)
    base = [sys.executable, str(REPO / "scripts/predict.py"), "--ckpt_path", str(trained), "--input", str(new)]
    for name, extra in (("one.csv", []), ("two.csv", ["--devices", "2"])):
        result = subprocess.run(
            [*base, "--output", name, "--accelerator", "cpu", "--batch_size", "3", *extra],
            cwd=tmp_path,
            env=script_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.count("Wrote 11 predictions") == 1, result.stdout
    one, two = (tmp_path / "one.csv").read_text(), (tmp_path / "two.csv").read_text()
    assert two == one
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no part or temporary file
