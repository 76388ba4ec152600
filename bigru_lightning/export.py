"""Export a trained checkpoint to ONNX or TorchScript: ``scripts/export.py`` calls :func:`main`.

The exported model is the whole predictor: raw (unstandardised) sequences ``x`` of shape
(batch, time, features), float32, go in, standardisation by the trained ``feature_mean`` /
``feature_std`` happens inside, class probabilities of shape (batch, num_classes) come out. Batch and
time are dynamic axes. Variable lengths are computed without packing (see
:mod:`bigru_lightning.model`), so the exported graph runs the trained network itself.

- ONNX: the graph takes ``x`` only (every sequence fills all ``time`` steps), or, with ``--lengths``,
  ``x`` and ``lengths`` (int64, shape (batch,), each in [1, time]). Output name: ``probabilities``.
  The label names are stored in the model's metadata under ``label_names`` (a JSON list).
- TorchScript: one scripted module ``forward(x, lengths=None)``; its ``label_names`` attribute
  holds the label names.

The checkpoint is loaded with ``weights_only=True``; the output is written to a temporary file in the
target folder and renamed into place, and an existing file is replaced only with ``--overwrite``.
Before the file is put in place, the exported model is run (onnxruntime or ``torch.jit.load``) on random
sequences of a batch size and length different from the export example and its largest difference from
PyTorch's probabilities is printed; above 1e-5 nothing is written (``--skip_check`` skips this).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bigru_lightning import app
from bigru_lightning.app import OptionParser, atomic_output, load_classifier, run_command
from bigru_lightning.errors import UserInputError

if TYPE_CHECKING:  # torch and Lightning are imported where needed: a bad option fails in a fraction of a second
    import numpy as np
    import torch

    from bigru_lightning.model import ExportableClassifier
    from bigru_lightning.module import BiGRUClassifier

FORMATS = ("onnx", "torchscript")
ONNX_EXPORTERS = ("dynamo", "torchscript")
CHECK_TOLERANCE = 1e-5
# The example the exporters trace with; the check uses other sizes so that fixed axes would show up.
EXAMPLE_BATCH, EXAMPLE_TIME = 3, 8
CHECK_BATCH, CHECK_TIME = 7, 23


class ExportCheckError(RuntimeError):
    """The exported model does not reproduce PyTorch (fixed axes, other probabilities); nothing was written."""


def build_parser() -> OptionParser:
    """The command line of ``scripts/export.py``."""
    parser = OptionParser(
        prog="export.py",
        description="Export a trained BiGRU checkpoint to ONNX or TorchScript (raw sequences in, probabilities out).",
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by scripts/fit.py (.ckpt)")
    parser.add_argument("--format", required=True, metavar="{onnx,torchscript}", help="export format")
    parser.add_argument("--output", required=True, help="file to write (e.g. model.onnx or model.pt)")
    parser.add_argument(
        "--lengths",
        action="store_true",
        help="ONNX only: the graph takes a second input 'lengths' (int64, (batch,)) for padded batches; "
        "without it the graph takes 'x' only and every sequence fills all time steps. "
        "A TorchScript module always accepts optional lengths.",
    )
    parser.add_argument(
        "--onnx_exporter",
        default="dynamo",
        metavar="{dynamo,torchscript}",
        help="ONNX only: torch.onnx.export(dynamo=True) (default, PyTorch's supported exporter) or the legacy "
        "TorchScript-based one (dynamo=False: deprecated, much faster to export, same results)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it already exists")
    parser.add_argument(
        "--skip_check",
        action="store_true",
        help="do not verify the exported model before writing it (by default it is run, with onnxruntime or "
        "torch.jit.load, on random sequences of another batch size and length than the export example, its largest "
        f"difference from PyTorch is printed, and nothing is written above {CHECK_TOLERANCE:g})",
    )
    return parser


@dataclass(frozen=True)
class ExportRequest:
    """Validated command-line settings."""

    ckpt_path: Path
    format: str
    output: Path
    lengths: bool
    onnx_exporter: str
    overwrite: bool
    check: bool = True


def parse_request(args: Sequence[str]) -> ExportRequest:
    """Parse and validate ``args``; raise :class:`UserInputError` naming the bad parameter."""
    ns = build_parser().parse_args(list(args))
    if ns.format not in FORMATS:
        raise UserInputError(f"--format {ns.format}: unknown export format (accepted: {', '.join(FORMATS)})")
    if ns.onnx_exporter not in ONNX_EXPORTERS:
        raise UserInputError(
            f"--onnx_exporter {ns.onnx_exporter}: unknown exporter (accepted: {', '.join(ONNX_EXPORTERS)})"
        )
    if ns.format == "torchscript" and ns.lengths:
        raise UserInputError(
            "--lengths applies to --format onnx only (a TorchScript module always takes optional lengths)"
        )
    request = ExportRequest(
        ckpt_path=Path(ns.ckpt_path),
        format=ns.format,
        output=Path(ns.output),
        lengths=ns.lengths,
        onnx_exporter=ns.onnx_exporter,
        overwrite=ns.overwrite,
        check=not ns.skip_check,
    )
    check_output(request.output, request.ckpt_path, request.overwrite)
    return request


def check_output(output: Path, ckpt_path: Path, overwrite: bool) -> None:
    """Refuse an output that would clobber something (a file without ``--overwrite``, a folder, the checkpoint)."""
    if output.exists() and ckpt_path.exists() and output.resolve() == ckpt_path.resolve():
        raise UserInputError(f"--output {output}: is the checkpoint itself; choose another file")
    app.check_output(output, overwrite)


def export_onnx(model: ExportableClassifier, path: Path, *, with_lengths: bool, exporter: str = "dynamo") -> None:
    """Write ``model`` as an ONNX graph with dynamic batch and time axes to ``path``."""
    import onnx
    import torch

    from bigru_lightning.model import FixedLengthGraph, PaddedGraph

    x = torch.randn(EXAMPLE_BATCH, EXAMPLE_TIME, model.input_size)
    lengths = torch.tensor([EXAMPLE_TIME, EXAMPLE_TIME // 2, 1] + [EXAMPLE_TIME] * (EXAMPLE_BATCH - 3))
    wrapper: torch.nn.Module = PaddedGraph(model) if with_lengths else FixedLengthGraph(model)
    inputs: tuple[torch.Tensor, ...] = (x, lengths) if with_lengths else (x,)
    input_names = ["x", "lengths"] if with_lengths else ["x"]
    with _quiet_exporters():
        if exporter == "dynamo":
            _reset_rnn_dispatch_cache()
            batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
            shapes: dict[str, Any] = {"x": {0: batch, 1: time}}
            if with_lengths:
                shapes["lengths"] = {0: batch}
            program = torch.onnx.export(
                wrapper,
                inputs,
                dynamo=True,
                input_names=input_names,
                output_names=["probabilities"],
                dynamic_shapes=shapes,
                verbose=False,
            )
            assert program is not None
            proto = program.model_proto
        else:
            buffer = io.BytesIO()
            axes = {"x": {0: "batch", 1: "time"}, "probabilities": {0: "batch"}}
            if with_lengths:
                axes["lengths"] = {0: "batch"}
            torch.onnx.export(  # the legacy exporter also writes to file objects
                wrapper,
                inputs,
                buffer,  # type: ignore[arg-type]
                dynamo=False,
                input_names=input_names,
                output_names=["probabilities"],
                dynamic_axes=axes,
            )
            proto = onnx.load_from_string(buffer.getvalue())
    _check_dynamic_axes(proto, input_names)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "label_names", json.dumps(model.label_names)
    onnx.save(proto, str(path))


def _reset_rnn_dispatch_cache() -> None:
    import torch

    """Work around a torch 2.13 exporter bug: every dynamo export after the first in a process froze the time axis.

    ``torch.onnx.export(dynamo=True)`` swaps in a ``while_loop`` GRU decomposition (``py_kernels``) for the
    capture, but the operator's dispatch cache keeps the kernel resolved before, so a second export in the
    same process traces the Python-loop decomposition, which specialises ``time`` to the example length.
    """
    for op in (torch.ops.aten.gru.input, torch.ops.aten.gru.data):
        cache = getattr(op, "_dispatch_cache", None)
        if isinstance(cache, dict):
            cache.clear()


def _check_dynamic_axes(proto: Any, input_names: list[str]) -> None:
    """Refuse a graph whose batch or time axis came out fixed (an exporter bug, never the user's fault)."""
    dims = {
        value.name: [d.dim_param if d.dim_param else d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in list(proto.graph.input) + list(proto.graph.output)
    }
    dynamic = {"x": [0, 1], "lengths": [0], "probabilities": [0]}
    for name in [*input_names, "probabilities"]:
        fixed = [axis for axis in dynamic[name] if not isinstance(dims[name][axis], str)]
        if fixed:
            raise ExportCheckError(
                f"the ONNX exporter fixed axis {fixed[0]} of '{name}' to {dims[name][fixed[0]]}; "
                "nothing written (try the other --onnx_exporter)"
            )


def export_torchscript(model: ExportableClassifier, path: Path) -> None:
    """Write ``model`` as a scripted TorchScript module (``forward(x, lengths=None)``) to ``path``."""
    import torch

    with _quiet_exporters():
        scripted = torch.jit.script(model)
        torch.jit.save(scripted, str(path))


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Hide the exporters' progress prints and known harmless warnings (deprecations, export hints)."""
    import logging

    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        onnx_logger.setLevel(level)


def check_inputs(model: ExportableClassifier, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random raw sequences on the model's input scale and lengths from 1 to the full time, for checks."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(CHECK_BATCH, CHECK_TIME, model.input_size, generator=generator)
    x = model.feature_mean + 1.5 * model.feature_std * noise
    lengths = torch.randint(1, CHECK_TIME + 1, (CHECK_BATCH,), generator=generator)
    lengths[0], lengths[1] = CHECK_TIME, 1
    return x.float(), lengths


def run_exported(path: Path, fmt: str) -> Callable[[torch.Tensor, torch.Tensor | None], np.ndarray]:
    """A function running the exported file (onnxruntime or ``torch.jit.load``) on x and optional lengths."""
    import numpy as np
    import torch

    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [node.name for node in session.get_inputs()]

        def run_onnx(x: torch.Tensor, lengths: torch.Tensor | None) -> np.ndarray:
            feeds = {"x": x.numpy()}
            if "lengths" in names:
                if lengths is None:
                    raise ValueError("this graph takes lengths")
                feeds["lengths"] = lengths.numpy()
            return np.asarray(session.run(["probabilities"], feeds)[0])

        return run_onnx
    loaded = torch.jit.load(str(path), map_location="cpu")

    def run_torchscript(x: torch.Tensor, lengths: torch.Tensor | None) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(loaded(x, lengths).numpy())

    return run_torchscript


def exportable_model(classifier: BiGRUClassifier) -> ExportableClassifier:
    """The exportable model of a trained classifier: its network, input scaling and label names."""
    from bigru_lightning.model import ExportableClassifier

    return ExportableClassifier(classifier.net, classifier.feature_mean, classifier.feature_std, classifier.label_names)


def max_difference(path: Path, fmt: str, classifier: BiGRUClassifier, *, with_lengths: bool) -> float:
    """Largest |exported - PyTorch| probability over :func:`check_inputs`.

    PyTorch is the trained model itself.
    """
    import numpy as np
    import torch

    model = exportable_model(classifier)
    x, lengths = check_inputs(model)
    run = run_exported(path, fmt)
    cases: list[torch.Tensor | None] = [lengths] if (with_lengths and fmt == "onnx") else [None]
    if fmt == "torchscript":
        cases.append(lengths)
    worst = 0.0
    with torch.no_grad():
        for case in cases:
            reference = classifier(x, case).softmax(dim=-1).numpy()
            worst = max(worst, float(np.abs(run(x, case) - reference).max()))
    return worst


def export(request: ExportRequest) -> str:
    """Export ``request.ckpt_path`` to ``request.output`` (temporary file, then rename); return the summary line."""
    if request.format == "onnx":
        _require_onnx(request)
    classifier = load_classifier(request.ckpt_path)
    model = exportable_model(classifier)
    with atomic_output(request.output, overwrite=request.overwrite) as temp:
        if request.format == "onnx":
            exporter = request.onnx_exporter
            blocker = model.dynamo_onnx_blocker()
            if exporter == "dynamo" and blocker is not None:
                print(f"note: {blocker}: exporting with --onnx_exporter torchscript")
                exporter = "torchscript"
            export_onnx(model, temp, with_lengths=request.lengths, exporter=exporter)
        else:
            export_torchscript(model, temp)
        if request.check:
            difference = max_difference(temp, request.format, classifier, with_lengths=request.lengths)
            print(
                f"check: max abs difference vs PyTorch = {difference:.3g} "
                f"(batch {CHECK_BATCH}, time {CHECK_TIME}; exported with batch {EXAMPLE_BATCH}, time {EXAMPLE_TIME})"
            )
            if not difference <= CHECK_TOLERANCE:
                hint = " (try the other --onnx_exporter)" if request.format == "onnx" else ""
                raise ExportCheckError(
                    f"the exported model differs from PyTorch by {difference:.3g} (above {CHECK_TOLERANCE:g}); "
                    f"nothing written{hint}"
                )
    inputs = f"x (batch, time, {model.input_size}) float32"
    if request.format == "torchscript":
        inputs += " and optional lengths (batch,) int64"
    elif request.lengths:
        inputs += " and lengths (batch,) int64"
    return f"wrote {request.output} ({request.format}): {inputs} -> probabilities (batch, {model.num_classes})"


def _require_onnx(request: ExportRequest) -> None:
    """Refuse --format onnx early, with the install command, when a package it needs is missing."""
    needed = ["onnx"] + (["onnxscript"] if request.onnx_exporter == "dynamo" else [])
    if request.check:
        needed.append("onnxruntime")
    missing = [package for package in needed if importlib.util.find_spec(package) is None]
    if missing:
        raise UserInputError(
            f"--format onnx needs {', '.join(missing)}: pip install 'bigru-lightning[export]'"
            + (" (or pass --skip_check)" if missing == ["onnxruntime"] else "")
        )


def main(args: Sequence[str] | None = None) -> None:
    """Run ``scripts/export.py`` on ``args`` (default ``sys.argv[1:]``); user mistakes exit 2 with one line."""
    argv = sys.argv[1:] if args is None else list(args)
    print(run_command(lambda: export(parse_request(argv)), {ExportCheckError: 1}))
