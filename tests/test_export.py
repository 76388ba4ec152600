"""Export: the packing-free module, ONNX (onnxruntime) and TorchScript files, scripts/export.py and its errors."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from conftest import REPO, script_env

import bigru_lightning.export as export_module
from bigru_lightning.cli import main as fit_main
from bigru_lightning.export import (
    EXAMPLE_BATCH,
    EXAMPLE_TIME,
    ExportCheckError,
    _check_dynamic_axes,
    export_onnx,
    export_torchscript,
    exportable_model,
    load_classifier,
)
from bigru_lightning.model import POOLINGS, FixedLengthGraph
from bigru_lightning.module import BiGRUClassifier

TOLERANCE = 1e-5
CONFIGS = [
    (pooling, layers, bidirectional) for pooling in POOLINGS for layers in (1, 2) for bidirectional in (True, False)
]
# The model options, alone and combined (the GRU's own settings are covered by CONFIGS).
OPTIONS: list[dict[str, Any]] = [
    {"pooling": "attention"},
    {"conv_channels": [5, 7, 4]},
    {"downsample": 3, "pooling": "mean"},
    {"conv_channels": [4, 6], "conv_kernels": [4, 3], "downsample": 2, "pooling": "attention", "num_layers": 2},
    {"conv_channels": [5], "conv_kernels": [3], "downsample": 4, "bidirectional": False},
    {"rocket_features": 168, "rocket_max_dilation": 2},
    {"rocket_features": 252, "conv_channels": [4], "conv_kernels": [3], "pooling": "attention"},
]
OPTION_IDS = [",".join(f"{k}={v}" for k, v in options.items()) for options in OPTIONS]
MEAN = torch.tensor([3.0, -1.0, 0.5])
STD = torch.tensor([2.0, 0.25, 5.0])


def _classifier(pooling: str, num_layers: int, bidirectional: bool, seed: int = 0, **options: Any) -> BiGRUClassifier:
    """A small model with random weights, non-trivial scaling and label names, in eval mode."""
    torch.manual_seed(seed)
    model = BiGRUClassifier(
        input_size=3,
        num_classes=4,
        hidden_size=6,
        num_layers=num_layers,
        bidirectional=bidirectional,
        pooling=pooling,  # type: ignore[arg-type]
        dropout=0.1 if num_layers > 1 else 0.0,
        **options,
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-0.8, 0.8)  # larger than the init so that differences would show
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):  # running statistics that are not the identity
                module.running_mean.uniform_(-0.5, 0.5)  # type: ignore[union-attr]
                module.running_var.uniform_(0.5, 2.0)  # type: ignore[union-attr]
    model.set_input_scaling(MEAN, STD)
    if model.net.rocket is not None:  # biases from data, as training sets them
        x = MEAN + STD * torch.randn(10, 12, 3, generator=torch.Generator().manual_seed(seed + 7))
        model.net.rocket.fit(x, None, MEAN, STD)
    model.label_names = ["cat", "dog", "emu", "yak"]
    return model.eval()


def _inputs(batch: int, time: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw sequences on the scaling's scale and lengths covering 1 and the full time."""
    generator = torch.Generator().manual_seed(seed)
    x = MEAN + STD * torch.randn(batch, time, 3, generator=generator)
    lengths = torch.randint(1, time + 1, (batch,), generator=generator)
    lengths[0] = time
    if batch > 1:
        lengths[1] = 1
    return x, lengths


def _reference(model: BiGRUClassifier, x: torch.Tensor, lengths: torch.Tensor | None) -> np.ndarray:
    """PyTorch's probabilities: the training model itself."""
    with torch.no_grad():
        return model(x, lengths).softmax(dim=-1).numpy()


def _with_options(options: dict[str, Any]) -> BiGRUClassifier:
    settings = {"pooling": "final_state", "num_layers": 1, "bidirectional": True} | options
    return _classifier(**settings)


@pytest.mark.parametrize(("pooling", "num_layers", "bidirectional"), CONFIGS)
def test_exportable_module_matches_the_classifier(pooling: str, num_layers: int, bidirectional: bool) -> None:
    model = _classifier(pooling, num_layers, bidirectional)
    exportable = exportable_model(model)
    x, lengths = _inputs(9, 11)
    with torch.no_grad():
        with_lengths = exportable(x, lengths).numpy()
        without = exportable(x).numpy()
    np.testing.assert_allclose(with_lengths, _reference(model, x, lengths), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(without, _reference(model, x, None), rtol=0, atol=TOLERANCE)
    # The lengths matter (a check that could fail if padding leaked or lengths were ignored).
    assert np.abs(with_lengths - without).max() > 1e-3


def test_the_exportable_model_is_built_from_the_plain_network() -> None:
    """Standardise with the given scaling, the same network, softmax: no LightningModule needed."""
    from bigru_lightning.model import BiGRU, ExportableClassifier

    net = BiGRU(input_size=3, num_classes=3).eval()
    mean, std = torch.tensor([1.0, -2.0, 0.0]), torch.tensor([2.0, 0.5, 1.0])
    exportable = ExportableClassifier(net, mean, std, [0, 1, 2])
    x, lengths = _inputs(4, 6)
    with torch.no_grad():
        expected = net((x - mean) / std, lengths).softmax(dim=-1)
        np.testing.assert_allclose(exportable(x, lengths).numpy(), expected.numpy(), rtol=0, atol=1e-6)
    assert exportable.label_names == ["0", "1", "2"] and exportable.net is not net


@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_never_reaches_the_output(bidirectional: bool) -> None:
    exportable = exportable_model(_classifier("final_state", 2, bidirectional))
    x, lengths = _inputs(5, 10)
    garbage = x.clone()
    for row, length in enumerate(lengths.tolist()):
        garbage[row, length:] = 1e3
    with torch.no_grad():
        assert torch.equal(exportable(x, lengths), exportable(garbage, lengths))
        alone = torch.cat([exportable(x[i : i + 1, :n]) for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(exportable(x, lengths).detach(), alone, rtol=0, atol=TOLERANCE)


def _onnx_session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(("pooling", "num_layers", "bidirectional"), CONFIGS)
def test_onnx_matches_pytorch_on_other_shapes(
    pooling: str, num_layers: int, bidirectional: bool, tmp_path: Path
) -> None:
    """Legacy (TorchScript-based) exporter: fast, so every configuration; dynamo is tested below."""
    model = _classifier(pooling, num_layers, bidirectional)
    exportable = exportable_model(model)
    fixed, padded = tmp_path / "fixed.onnx", tmp_path / "padded.onnx"
    export_onnx(exportable, fixed, with_lengths=False, exporter="torchscript")
    export_onnx(exportable, padded, with_lengths=True, exporter="torchscript")
    for batch, time in ((5, 13), (1, 1), (2, 30)):
        assert (batch, time) != (EXAMPLE_BATCH, EXAMPLE_TIME)
        x, lengths = _inputs(batch, time)
        got = _onnx_session(fixed).run(None, {"x": x.numpy()})[0]
        np.testing.assert_allclose(got, _reference(model, x, None), rtol=0, atol=TOLERANCE)
        got = _onnx_session(padded).run(None, {"x": x.numpy(), "lengths": lengths.numpy()})[0]
        np.testing.assert_allclose(got, _reference(model, x, lengths), rtol=0, atol=TOLERANCE)


def test_onnx_graph_signature_and_label_metadata(tmp_path: Path) -> None:
    exportable = exportable_model(_classifier("mean", 1, True))
    path = tmp_path / "m.onnx"
    export_onnx(exportable, path, with_lengths=True, exporter="torchscript")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    shapes = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in list(proto.graph.input) + list(proto.graph.output)
    }
    assert shapes == {"x": ["batch", "time", 3], "lengths": ["batch"], "probabilities": ["batch", 4]}
    types = {value.name: value.type.tensor_type.elem_type for value in proto.graph.input}
    assert types == {"x": onnx.TensorProto.FLOAT, "lengths": onnx.TensorProto.INT64}
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert json.loads(metadata["label_names"]) == ["cat", "dog", "emu", "yak"]


def test_onnx_dynamo_exporter_matches_pytorch_twice_in_one_process(tmp_path: Path) -> None:
    """The default exporter (dynamo=True, slower): both graphs, one after the other in the same process.

    In torch 2.13 the second dynamo export of a process froze the time axis unless the GRU dispatch cache
    is reset (see ``_reset_rnn_dispatch_cache``); this test fails without that.
    """
    for pooling, num_layers, with_lengths in (("max", 2, False), ("final_state", 1, True)):
        model = _classifier(pooling, num_layers, True)
        path = tmp_path / f"{pooling}.onnx"
        export_onnx(exportable_model(model), path, with_lengths=with_lengths, exporter="dynamo")
        session = _onnx_session(path)
        assert [node.name for node in session.get_inputs()] == (["x", "lengths"] if with_lengths else ["x"])
        for batch, time in ((6, 17), (1, 1)):
            x, lengths = _inputs(batch, time)
            feeds = {"x": x.numpy()} | ({"lengths": lengths.numpy()} if with_lengths else {})
            expected = _reference(model, x, lengths if with_lengths else None)
            np.testing.assert_allclose(session.run(None, feeds)[0], expected, rtol=0, atol=TOLERANCE)


def test_a_graph_with_fixed_axes_is_refused(tmp_path: Path) -> None:
    """The guard against exporter bugs: an ONNX graph whose time axis is fixed never becomes the output."""
    exportable = exportable_model(_classifier("mean", 1, True))
    fixed = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            FixedLengthGraph(exportable),
            (torch.randn(2, 5, 3),),
            fixed,  # type: ignore[arg-type]
            dynamo=False,
            input_names=["x"],
            output_names=["probabilities"],
            dynamic_axes={"x": {0: "batch"}, "probabilities": {0: "batch"}},  # time left fixed
        )
    with pytest.raises(ExportCheckError, match="fixed axis 1 of 'x' to 5"):
        _check_dynamic_axes(onnx.load_from_string(fixed.getvalue()), ["x"])


@pytest.mark.parametrize(("pooling", "num_layers", "bidirectional"), CONFIGS)
def test_torchscript_matches_pytorch(pooling: str, num_layers: int, bidirectional: bool, tmp_path: Path) -> None:
    model = _classifier(pooling, num_layers, bidirectional)
    path = tmp_path / "m.pt"
    export_torchscript(exportable_model(model), path)
    loaded = torch.jit.load(str(path))
    assert list(loaded.label_names) == ["cat", "dog", "emu", "yak"]
    x, lengths = _inputs(6, 19)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x, lengths).numpy(), _reference(model, x, lengths), rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(loaded(x).numpy(), _reference(model, x, None), rtol=0, atol=TOLERANCE)


def test_torchscript_refuses_bad_lengths_and_shapes(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    export_torchscript(exportable_model(_classifier("mean", 1, True)), path)
    loaded = torch.jit.load(str(path))
    x = torch.randn(2, 5, 3)
    for lengths, message in (
        (torch.tensor([5, 0]), r"lengths must be in \[1, 5\]"),
        (torch.tensor([6, 1]), r"lengths must be in \[1, 5\]"),
        (torch.tensor([5]), r"lengths must have shape \(2,\)"),
    ):
        with pytest.raises(torch.jit.Error, match=message):
            loaded(x, lengths)
    with pytest.raises(torch.jit.Error, match=r"x must have shape \(batch, time, 3\)"):
        loaded(torch.randn(2, 5, 4))


# -- the model options: the same checks on every option and combination --------------------------------------------


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_options_padding_never_reaches_the_exportable_output(options: dict[str, Any]) -> None:
    exportable = exportable_model(_with_options(options))
    x, lengths = _inputs(6, 17)
    garbage = x.clone()
    for row, length in enumerate(lengths.tolist()):
        garbage[row, length:] = 1e3
    with torch.no_grad():
        padded = exportable(garbage, lengths)
        alone = torch.cat([exportable(x[i : i + 1, :n]) for i, n in enumerate(lengths.tolist())])
        assert np.abs(padded.numpy() - exportable(x).numpy()).max() > 1e-3  # the lengths matter
    torch.testing.assert_close(padded, alone, rtol=0, atol=1e-6)


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_options_onnx_and_torchscript_match_pytorch(options: dict[str, Any], tmp_path: Path) -> None:
    """Legacy ONNX exporter (both graphs) and TorchScript, on shapes other than the export example's."""
    model = _with_options(options)
    exportable = exportable_model(model)
    fixed, padded, scripted = tmp_path / "fixed.onnx", tmp_path / "padded.onnx", tmp_path / "m.pt"
    export_onnx(exportable, fixed, with_lengths=False, exporter="torchscript")
    export_onnx(exportable, padded, with_lengths=True, exporter="torchscript")
    export_torchscript(exportable, scripted)
    loaded = torch.jit.load(str(scripted))
    for batch, time in ((5, 13), (1, 1), (2, 30)):
        x, lengths = _inputs(batch, time)
        full, by_length = _reference(model, x, None), _reference(model, x, lengths)
        np.testing.assert_allclose(_onnx_session(fixed).run(None, {"x": x.numpy()})[0], full, rtol=0, atol=TOLERANCE)
        feeds = {"x": x.numpy(), "lengths": lengths.numpy()}
        np.testing.assert_allclose(_onnx_session(padded).run(None, feeds)[0], by_length, rtol=0, atol=TOLERANCE)
        with torch.no_grad():
            np.testing.assert_allclose(loaded(x, lengths).numpy(), by_length, rtol=0, atol=TOLERANCE)
            np.testing.assert_allclose(loaded(x).numpy(), full, rtol=0, atol=TOLERANCE)


def test_options_onnx_dynamo_exporter_matches_pytorch(tmp_path: Path) -> None:
    """The default exporter on the conv branch and attention (downsampling: see the fallback test below)."""
    model = _with_options({"conv_channels": [4, 6], "conv_kernels": [4, 3], "pooling": "attention", "num_layers": 2})
    path = tmp_path / "m.onnx"
    export_onnx(exportable_model(model), path, with_lengths=True, exporter="dynamo")
    x, lengths = _inputs(6, 17)
    got = _onnx_session(path).run(None, {"x": x.numpy(), "lengths": lengths.numpy()})[0]
    np.testing.assert_allclose(got, _reference(model, x, lengths), rtol=0, atol=TOLERANCE)


def test_downsampling_names_why_dynamo_is_not_used() -> None:
    assert exportable_model(_with_options({})).dynamo_onnx_blocker() is None
    blocker = exportable_model(_with_options({"downsample": 2})).dynamo_onnx_blocker()
    assert blocker is not None and "model.downsample" in blocker


@pytest.fixture(scope="module")
def options_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint fitted through the CLI on variable-length sequences with every model option on."""
    folder = tmp_path_factory.mktemp("fit_options")
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 21, size=48)
    x = rng.standard_normal((48, 20, 2)).astype(np.float32)
    y = np.array(["up", "down"] * 24)
    x[y == "up"] += 1.0
    np.savez(folder / "train.npz", X=x, y=y, lengths=lengths)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        fit_main(
            [
                "--data", "FileDataModule",
                "--data.train_file", str(folder / "train.npz"),
                "--data.batch_size", "16",
                "--trainer.max_epochs", "2",
                "--trainer.enable_model_summary", "false",
                "--model.hidden_size", "6",
                "--model.pooling", "attention",
                "--model.conv_channels", "[4, 6]",
                "--model.conv_kernels", "[5, 3]",
                "--model.downsample", "3",
                "--model.label_smoothing", "0.1",
            ]
        )  # fmt: skip
    return folder / "lightning_logs/version_0/checkpoints/last.ckpt"


def test_options_checkpoint_predicts_and_exports(options_checkpoint: Path, tmp_path: Path) -> None:
    """scripts/predict.py and scripts/export.py (ONNX: the legacy exporter) on a checkpoint with options."""
    model = load_classifier(options_checkpoint)
    assert model.hparams["downsample"] == 3 and model.hparams["conv_channels"] == [4, 6]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 14, 2)).astype(np.float32)
    lengths = np.array([14, 1, 6, 9, 3])
    np.savez(tmp_path / "new.npz", X=x, lengths=lengths)
    predict = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "predict.py"), "--ckpt_path", str(options_checkpoint),
         "--input", str(tmp_path / "new.npz"), "--output", str(tmp_path / "preds.csv")],
        cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert predict.returncode == 0, predict.stderr[-3000:]
    rows = (tmp_path / "preds.csv").read_text().splitlines()
    probabilities = np.array([[float(v) for v in row.split(",")[2:]] for row in rows[1:]])
    expected = _reference(model, torch.from_numpy(x), torch.from_numpy(lengths))
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-5)
    for fmt, name, extra in (("onnx", "m.onnx", ["--lengths"]), ("torchscript", "m.pt", [])):
        args = ["--ckpt_path", str(options_checkpoint), "--format", fmt, "--output", str(tmp_path / name), *extra]
        result = _run_export(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "check: max abs difference vs PyTorch" in result.stdout
    assert (
        "note: model.downsample > 1"
        in _run_export(
            "--ckpt_path",
            str(options_checkpoint),
            "--format",
            "onnx",
            "--output",
            str(tmp_path / "f.onnx"),
            cwd=tmp_path,
        ).stdout
    )
    feeds = {"x": x, "lengths": lengths}
    got = _onnx_session(tmp_path / "m.onnx").run(None, feeds)[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


# -- scripts/export.py end to end ----------------------------------------------------------------------------------


def _run_export(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "export.py"), *args],
        cwd=cwd,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def fitted_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint written by the training CLI (1 epoch, 2 layers, mean pooling, 2 features)."""
    folder = tmp_path_factory.mktemp("fit")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        fit_main(
            [
                "--trainer.max_epochs", "1",
                "--model.num_layers", "2",
                "--model.hidden_size", "8",
                "--model.pooling", "mean",
                "--data.num_features", "2",
                "--data.samples_per_class", "40",
            ]
        )  # fmt: skip
    return folder / "lightning_logs/version_0/checkpoints/last.ckpt"


def test_fit_checkpoint_loads_with_weights_only(fitted_checkpoint: Path) -> None:
    torch.load(fitted_checkpoint, map_location="cpu", weights_only=True)  # raises on any pickled object
    model = load_classifier(fitted_checkpoint)
    assert model.hparams["num_layers"] == 2 and model.hparams["pooling"] == "mean"
    assert model.feature_mean.shape == (2,)


def test_export_script_onnx_with_lengths(fitted_checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.onnx"
    result = _run_export(
        "--ckpt_path", str(fitted_checkpoint), "--format", "onnx", "--output", str(output), "--lengths",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "check: max abs difference vs PyTorch = " in result.stdout
    assert f"wrote {output} (onnx)" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary file left
    model = load_classifier(fitted_checkpoint)
    x, lengths = (torch.randn(4, 15, 2) * 3, torch.tensor([15, 1, 9, 4]))
    got = _onnx_session(output).run(None, {"x": x.numpy(), "lengths": lengths.numpy()})[0]
    np.testing.assert_allclose(got, _reference(model, x, lengths), rtol=0, atol=TOLERANCE)


def test_export_script_torchscript_over_an_existing_file(fitted_checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.pt"
    output.write_bytes(b"an older export")
    ckpt = str(fitted_checkpoint)
    args = ("--ckpt_path", ckpt, "--format", "torchscript", "--output", str(output), "--overwrite", "--skip_check")
    result = _run_export(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "check:" not in result.stdout  # skipped; the tests below compare with PyTorch themselves
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # replaced, no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(output.stat().st_mode) == 0o666 & ~umask  # an ordinary file, not the temp file's 0600
    loaded = torch.jit.load(str(output))
    model = load_classifier(fitted_checkpoint)
    x, lengths = (torch.randn(3, 12, 2), torch.tensor([12, 5, 1]))
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x, lengths).numpy(), _reference(model, x, lengths), rtol=0, atol=TOLERANCE)
    assert list(loaded.label_names) == model.label_names


def test_a_failed_check_writes_nothing(
    fitted_checkpoint: Path, in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An export that does not reproduce PyTorch (here: one head bias changed) exits 1 and leaves no file."""
    altered = load_classifier(fitted_checkpoint)
    with torch.no_grad():
        altered.net.head.bias[0] += 0.5
    impostor = exportable_model(altered)
    real_export = export_module.export_torchscript
    monkeypatch.setattr(export_module, "export_torchscript", lambda model, path: real_export(impostor, path))
    with pytest.raises(SystemExit) as stop:
        export_module.main(["--ckpt_path", str(fitted_checkpoint), "--format", "torchscript", "--output", "m.pt"])
    assert stop.value.code == 1
    assert "error: the exported model differs from PyTorch" in capsys.readouterr().err
    assert list(in_tmp.iterdir()) == []


# -- errors: one line, exit status 2, nothing of the user's touched ------------------------------------------------


def _assert_user_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _bad_checkpoints(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """Bad --ckpt_path values and the words their error must contain."""
    folder.mkdir()
    empty = folder / "empty.ckpt"
    empty.write_bytes(b"")
    truncated = folder / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:2000])
    text = folder / "notes.ckpt"
    text.write_text("these are my notes, not a checkpoint\n")
    plain = folder / "plain.ckpt"
    torch.save({"weights": torch.ones(3)}, plain)
    other = folder / "other_model.ckpt"
    checkpoint = torch.load(good, map_location="cpu", weights_only=True)
    checkpoint["state_dict"] = {"encoder.weight": torch.ones(2, 2)}
    torch.save(checkpoint, other)
    wrong_shape = folder / "wrong_shape.ckpt"
    checkpoint = torch.load(good, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["hidden_size"] = 5
    torch.save(checkpoint, wrong_shape)
    return {
        "missing": (folder / "nope.ckpt", "no such file"),
        "folder": (folder, "not a file"),
        "empty": (empty, "empty"),
        "truncated": (truncated, "truncated"),
        "text": (text, "not a PyTorch checkpoint"),
        "plain": (plain, "not a Lightning checkpoint"),
        "other model": (other, "incompatible checkpoint"),
        "wrong shape": (wrong_shape, "incompatible checkpoint"),
    }


class _Payload:
    """Pickles to a call that would create a file if unpickled unsafely."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.target), "w"))


def test_bad_checkpoints_are_refused(fitted_checkpoint: Path, tmp_path: Path) -> None:
    cases = _bad_checkpoints(tmp_path / "bad", fitted_checkpoint)
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "bad" / "evil.ckpt"
    checkpoint = torch.load(fitted_checkpoint, map_location="cpu", weights_only=True)
    checkpoint["extra"] = _Payload(marker)
    torch.save(checkpoint, evil)
    cases["pickle payload"] = (evil, "refused")
    before = {p: p.read_bytes() for p in (tmp_path / "bad").iterdir()}
    for name, (path, needle) in cases.items():
        result = _run_export("--ckpt_path", str(path), "--format", "torchscript", "--output", "m.pt", cwd=tmp_path)
        _assert_user_error(result, "--ckpt_path", needle)
        assert not (tmp_path / "m.pt").exists(), name
    assert not marker.exists()  # the payload never ran
    assert {p: p.read_bytes() for p in (tmp_path / "bad").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]  # no temporary files


def test_bad_options_are_refused_and_nothing_is_overwritten(fitted_checkpoint: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"the user's own file")
    ckpt, nowhere = str(fitted_checkpoint), str(tmp_path / "no/dir/m.onnx")
    cases = [
        (["--ckpt_path", ckpt, "--format", "tflite", "--output", "m.x"], ["--format tflite", "onnx, torchscript"]),
        (
            ["--ckpt_path", ckpt, "--format", "onnx", "--output", str(mine)],
            ["--output", "already exists", "--overwrite"],
        ),
        (["--ckpt_path", ckpt, "--format", "onnx", "--output", str(tmp_path)], ["--output", "folder"]),
        (
            ["--ckpt_path", ckpt, "--format", "onnx", "--output", nowhere],
            ["--output", "does not exist"],
        ),
        (["--ckpt_path", ckpt, "--format", "torchscript", "--output", "m.pt", "--lengths"], ["--lengths", "onnx only"]),
        (
            ["--ckpt_path", ckpt, "--format", "onnx", "--output", "m.onnx", "--onnx_exporter", "x"],
            ["--onnx_exporter x"],
        ),
        (["--ckpt_path", ckpt, "--format", "onnx", "--output", ckpt, "--overwrite"], ["--output", "checkpoint itself"]),
        (["--format", "onnx", "--output", "m.onnx"], ["--ckpt_path"]),
        (["--ckpt_path", ckpt, "--format", "onnx", "--output", "m.onnx", "--bogus"], ["--bogus"]),
    ]
    checkpoint_bytes = fitted_checkpoint.read_bytes()
    for args, needles in cases:
        _assert_user_error(_run_export(*args, cwd=tmp_path), *needles)
    assert mine.read_bytes() == b"the user's own file"
    assert fitted_checkpoint.read_bytes() == checkpoint_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.onnx"]
