"""Predict with a trained checkpoint: ``scripts/predict.py --ckpt_path CKPT --input FILE --output preds.csv``.

The input is any format :func:`bigru_lightning.data.files.read_sequences` reads (``.npz``, ``.csv``,
``.ts``; labels are not needed). The output CSV has one row per sequence: ``sequence_id`` (the
file's ids, or the index when it has none), ``predicted_label`` (the original label names saved in
the checkpoint) and one ``prob_<label>`` column per class. Standardisation and the label mapping
come from the checkpoint. Checkpoints are loaded with ``torch.load(weights_only=True)``: a file
that carries pickled Python objects (which could run code) is refused before anything in it runs.
An existing output file is never replaced unless ``--overwrite`` is given. Mistakes end in one
``error:`` line and exit status 2, as in ``scripts/fit.py`` (``BIGRU_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import inspect
import os
import pickle
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from bigru_lightning.cli import DEBUG_ENV, find_user_error, one_line
from bigru_lightning.data.files import SequenceFile, read_sequences
from bigru_lightning.errors import UserInputError
from bigru_lightning.module import BiGRUClassifier


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors become :class:`UserInputError` (one ``error:`` line, status 2)."""

    def error(self, message: str) -> NoReturn:
        raise UserInputError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of ``scripts/predict.py``."""
    parser = _Parser(
        prog="predict.py",
        description="Predict class probabilities for every sequence of a file with a trained checkpoint.",
    )
    parser.add_argument("--ckpt_path", required=True, help="Checkpoint written by scripts/fit.py (.ckpt).")
    parser.add_argument(
        "--input", required=True, help="Sequences to classify: .npz, .csv (long format) or .ts; labels optional."
    )
    parser.add_argument("--output", required=True, help="CSV file to write (refused if it exists, see --overwrite).")
    parser.add_argument("--overwrite", action="store_true", help="Replace --output if it already exists.")
    parser.add_argument("--batch_size", type=int, default=1024, help="Sequences per forward pass (default 1024).")
    return parser


def load_classifier(path: str | Path, param: str = "--ckpt_path") -> BiGRUClassifier:
    """Rebuild the classifier from a checkpoint without unpickling anything but tensors and plain data.

    Raises:
        UserInputError: The file is missing, empty, truncated, not a checkpoint, carries pickled
            objects, or holds a model this version cannot rebuild.
    """
    file = Path(path)
    where = f"{param} {file}"
    if not file.is_file():
        raise UserInputError(f"{where}: no such checkpoint file")
    if file.stat().st_size == 0:
        raise UserInputError(f"{where}: the file is empty; expected a .ckpt written by scripts/fit.py")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "unsupported global" in str(error).lower():  # a class or function to import and call: refused
            raise UserInputError(
                f"{where}: refused: it holds pickled Python objects besides tensors and plain data, which could run "
                "code when loaded; only weights-only checkpoints (as scripts/fit.py writes) are accepted"
            ) from error
        raise UserInputError(f"{where}: not a PyTorch checkpoint (or it is corrupt)") from error
    except Exception as error:  # garbage makes the weights-only unpickler fail in many ways
        raise UserInputError(f"{where}: not a PyTorch checkpoint, or truncated ({one_line(error)[:120]})") from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserInputError(
            f"{where}: not a Lightning checkpoint (no state_dict); expected a .ckpt from scripts/fit.py"
        )
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict):
        raise UserInputError(f"{where}: has no model hyper-parameters; expected a .ckpt from scripts/fit.py")
    accepted = set(inspect.signature(BiGRUClassifier.__init__).parameters) - {"self"}
    init_args = {key: value for key, value in hparams.items() if not str(key).startswith("_")}
    unknown = sorted(set(init_args) - accepted)
    if unknown:
        raise UserInputError(f"{where}: from an incompatible model (unknown hyper-parameters: {', '.join(unknown)})")
    try:
        model = BiGRUClassifier(**init_args)
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except (UserInputError, RuntimeError, TypeError, ValueError) as error:
        raise UserInputError(f"{where}: from an incompatible model ({one_line(error)[:200]})") from error
    model.on_load_checkpoint(checkpoint)
    if len(model.label_names) != model.net.num_classes:
        raise UserInputError(f"{where}: {len(model.label_names)} label names for {model.net.num_classes} classes")
    return model.eval()


def predict_probabilities(model: BiGRUClassifier, data: SequenceFile, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities of every sequence in ``data``, shape (N, num_classes), via ``predict_step``."""
    outputs = []
    model.eval()
    with torch.inference_mode():
        for batch_idx, start in enumerate(range(0, data.num_sequences, batch_size)):
            x = torch.from_numpy(np.ascontiguousarray(data.x[start : start + batch_size]))
            batch: tuple[torch.Tensor, ...] = (x, torch.zeros(x.shape[0], dtype=torch.int64))
            if data.lengths is not None:
                batch += (torch.from_numpy(data.lengths[start : start + batch_size]),)
            outputs.append(model.predict_step(batch, batch_idx).numpy())
    return np.concatenate(outputs)


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse an output path that exists (unless ``overwrite``), is a folder, or whose folder is missing."""
    if output.is_dir():
        raise UserInputError(f"--output {output}: is a folder; give a .csv file path")
    if output.exists() and not overwrite:
        raise UserInputError(f"--output {output}: already exists; choose another path or add --overwrite")
    if not output.parent.is_dir():
        raise UserInputError(f"--output {output}: folder {output.parent} does not exist")


def write_predictions(
    output: Path, ids: Sequence[str], label_names: Sequence[str], probabilities: np.ndarray, overwrite: bool
) -> None:
    """Write the predictions CSV atomically (a temporary file renamed into place); never clobber unless asked."""
    check_output(output, overwrite)
    predicted = probabilities.argmax(axis=1)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below; the name outlives it)
        "w", newline="", encoding="utf-8", dir=output.parent, prefix=f".{output.name}.", suffix=".tmp", delete=False
    )
    temporary = Path(handle.name)
    try:
        with handle:
            writer = csv.writer(handle)
            writer.writerow(["sequence_id", "predicted_label", *[f"prob_{name}" for name in label_names]])
            for seq_id, k, row in zip(ids, predicted, probabilities, strict=True):
                writer.writerow([seq_id, label_names[int(k)], *[format(float(p), ".8g") for p in row]])
        if overwrite:
            os.replace(temporary, output)
        else:
            try:
                os.link(temporary, output)  # fails if output appeared meanwhile: nothing is clobbered
            except FileExistsError:
                raise UserInputError(
                    f"--output {output}: already exists; choose another path or add --overwrite"
                ) from None
            except OSError:  # a file system without hard links
                check_output(output, overwrite)
                os.replace(temporary, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def run(options: argparse.Namespace) -> Path:
    """Load, read, predict and write; returns the output path."""
    if options.batch_size < 1:
        raise UserInputError(f"--batch_size must be a positive integer; got {options.batch_size}")
    output = Path(options.output)
    check_output(output, options.overwrite)
    model = load_classifier(options.ckpt_path)
    data = read_sequences(options.input, require_labels=False, param="--input")
    expected = int(model.hparams["input_size"])
    if data.num_features != expected:
        raise UserInputError(
            f"--input {data.path}: {data.num_features} features per step, but the model in {options.ckpt_path} "
            f"was trained on {expected}"
        )
    probabilities = predict_probabilities(model, data, options.batch_size)
    ids = data.ids if data.ids is not None else [str(i) for i in range(data.num_sequences)]
    write_predictions(output, ids, model.label_names, probabilities, options.overwrite)
    print(f"Wrote {len(ids)} predictions to {output}")
    return output


def main(args: Sequence[str] | None = None) -> Path:
    """Run ``predict.py`` on ``args`` (default: ``sys.argv[1:]``); user mistakes exit 2 with one line."""
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        options = build_parser().parse_args(sys.argv[1:] if args is None else list(args))
        return run(options)
    except Exception as error:
        user_error = find_user_error(error)
        if debug or user_error is None:
            raise
        print(f"error: {one_line(user_error)}", file=sys.stderr)
        raise SystemExit(2) from None
