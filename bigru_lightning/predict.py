"""Predict with a trained checkpoint: ``scripts/predict.py --ckpt_path CKPT --input FILE --output preds.csv``.

The input is any format :func:`bigru_lightning.data.files.read_sequences` reads (``.npz``, ``.csv``,
``.ts``; labels are not needed). The output has one row per sequence, in the input's order:
``sequence_id`` (the file's ids, or the index when it has none), ``predicted_label`` (the original
label names saved in the checkpoint) and one ``prob_<label>`` column per class; a CSV file, or a
Parquet file when the output name ends in ``.parquet``. Standardisation and the label mapping come
from the checkpoint, which is loaded with ``torch.load(weights_only=True)``: a file that carries
pickled Python objects (which could run code) is refused before anything in it runs.

Prediction runs in Lightning's ``Trainer.predict``, so ``--accelerator gpu --devices 2`` works as in
training; :class:`PredictionFileWriter` writes each batch as it comes (memory stays bounded by the
batch). The file is written to a temporary file and renamed into place when complete; an existing
output is never replaced unless ``--overwrite`` is given. Mistakes end in one ``error:`` line and exit
status 2, as in ``scripts/fit.py`` (``BIGRU_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from bigru_lightning.app import OptionParser, atomic_output, check_output, load_classifier, run_command
from bigru_lightning.cli import check_accelerator
from bigru_lightning.data.files import SequenceFile, read_sequences
from bigru_lightning.data.store import LazyIds
from bigru_lightning.errors import UserInputError, one_line

Batch = tuple[torch.Tensor, ...]


def build_parser() -> OptionParser:
    """The command-line options of ``scripts/predict.py``."""
    parser = OptionParser(
        prog="predict.py",
        description="Predict class probabilities for every sequence of a file with a trained checkpoint.",
    )
    parser.add_argument("--ckpt_path", required=True, help="Checkpoint written by scripts/fit.py (.ckpt).")
    parser.add_argument(
        "--input", required=True, help="Sequences to classify: .npz, .csv (long format) or .ts; labels optional."
    )
    parser.add_argument(
        "--output",
        required=True,
        help="File to write: CSV, or Parquet when it ends in .parquet (refused if it exists, see --overwrite).",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace --output if it already exists.")
    parser.add_argument("--batch_size", type=int, default=1024, help="Sequences per forward pass (default 1024).")
    parser.add_argument(
        "--accelerator", default="auto", help="As in training: cpu, gpu, mps or auto (default: auto, the best here)."
    )
    parser.add_argument("--devices", default="1", help="Devices to use, as in training: 1 (default), 2, auto, ...")
    return parser


class SequenceRows(Dataset[Batch]):
    """The sequences of a file as ``predict_step`` batches ``(x, dummy y[, lengths])``, sliced a batch at a time."""

    def __init__(self, data: SequenceFile) -> None:
        self.data = data

    def __len__(self) -> int:
        return self.data.num_sequences

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> Batch:
        """One batch: DataLoader's fetcher calls this with a whole batch of indices (no per-item collation)."""
        rows = np.asarray(indices, dtype=np.int64)
        x = torch.from_numpy(np.ascontiguousarray(self.data.x[rows]))
        batch: Batch = (x, torch.zeros(len(rows), dtype=torch.int64))
        if self.data.lengths is not None:
            batch += (torch.from_numpy(np.ascontiguousarray(self.data.lengths[rows])),)
        return batch


def _as_batch(batch: Any) -> Any:
    """The collate function: :meth:`SequenceRows.__getitems__` already made the batch."""
    return batch


class RowSink(Protocol):
    """An output file being written row block by row block."""

    def write(self, ids: Sequence[str], predicted: Sequence[str], probabilities: np.ndarray) -> None:
        """Append one block of rows."""

    def close(self) -> None:
        """Finish the file."""


class CsvSink:
    """Rows of a predictions CSV: ``sequence_id,predicted_label,prob_<label>...``, probabilities to 8 digits."""

    def __init__(self, path: Path, label_names: Sequence[str]) -> None:
        self.handle = path.open("w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.handle)
        self.writer.writerow(["sequence_id", "predicted_label", *[f"prob_{name}" for name in label_names]])

    def write(self, ids: Sequence[str], predicted: Sequence[str], probabilities: np.ndarray) -> None:
        """Append one block of rows."""
        for seq_id, label, row in zip(ids, predicted, probabilities, strict=True):
            self.writer.writerow([seq_id, label, *[format(float(p), ".8g") for p in row]])

    def close(self) -> None:
        """Close the file."""
        self.handle.close()


class ParquetSink:
    """The same columns in a Parquet file (pyarrow), one row group per block; probabilities as float32."""

    def __init__(self, path: Path, label_names: Sequence[str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.names = ["sequence_id", "predicted_label", *[f"prob_{name}" for name in label_names]]
        fields = [pa.field(self.names[0], pa.string()), pa.field(self.names[1], pa.string())]
        self.schema = pa.schema(fields + [pa.field(name, pa.float32()) for name in self.names[2:]])
        self.writer = pq.ParquetWriter(str(path), self.schema)

    def write(self, ids: Sequence[str], predicted: Sequence[str], probabilities: np.ndarray) -> None:
        """Append one block of rows as a row group."""
        import pyarrow as pa

        columns = [pa.array(list(ids), pa.string()), pa.array(list(predicted), pa.string())]
        columns += [pa.array(probabilities[:, k].astype(np.float32)) for k in range(probabilities.shape[1])]
        self.writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))

    def close(self) -> None:
        """Write the footer and close the file."""
        self.writer.close()


def open_sink(path: Path, label_names: Sequence[str], parquet: bool) -> RowSink:
    """A :class:`ParquetSink` or a :class:`CsvSink` writing to ``path``."""
    return ParquetSink(path, label_names) if parquet else CsvSink(path, label_names)


class PredictionFileWriter(BasePredictionWriter):
    """Write each predicted batch to the output file as it comes, in the input's order.

    On one device the rows go straight to the file. On several, each rank appends its rows (input
    index and probabilities) to its own part file beside the output; when all ranks are done, rank 0
    merges the parts by input index into the output, a block at a time. Set :attr:`target` (the file
    to write on rank 0) before ``Trainer.predict``.
    """

    MERGE_BLOCK = 65536

    def __init__(self, ids: Sequence[str], label_names: Sequence[str], parquet: bool, parts: Path) -> None:
        super().__init__(write_interval="batch")
        self.ids, self.label_names, self.parquet = ids, list(label_names), parquet
        self.parts = parts  # part files are named <parts>.rank<r>.part
        self.target: Path | None = None
        self._sink: RowSink | None = None
        self._part: Any = None
        self.rows_written = 0

    def _part_path(self, rank: int) -> Path:
        return self.parts.with_name(f"{self.parts.name}.rank{rank}.part")

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Open the output (one device) or this rank's part file (several)."""
        if trainer.world_size > 1:
            self._part = self._part_path(trainer.global_rank).open("wb")
        else:
            self._sink = open_sink(self._require_target(), self.label_names, self.parquet)

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Append the batch's rows (or, on several devices, its indices and probabilities to the part file)."""
        probabilities = prediction.detach().float().cpu().numpy()
        if batch_indices is None:
            raise RuntimeError("Lightning gave no batch indices to the prediction writer")
        indices = np.asarray(batch_indices, dtype=np.int64)
        if self._part is not None:
            record = np.empty((len(indices), 1 + probabilities.shape[1]), dtype=np.float64)
            record[:, 0], record[:, 1:] = indices, probabilities
            record.tofile(self._part)
            return
        self._write_rows(indices, probabilities)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close the file; on several devices wait for every rank, then merge the parts on rank 0."""
        if self._part is not None:
            self._part.close()
            self._part = None
            trainer.strategy.barrier("prediction parts written")
            if trainer.is_global_zero:
                self._sink = open_sink(self._require_target(), self.label_names, self.parquet)
                try:
                    self._merge_parts(trainer.world_size)
                finally:
                    for rank in range(trainer.world_size):
                        self._part_path(rank).unlink(missing_ok=True)
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def _write_rows(self, indices: np.ndarray, probabilities: np.ndarray) -> None:
        assert self._sink is not None
        predicted = [self.label_names[int(k)] for k in probabilities.argmax(axis=1)]
        self._sink.write(ids_at(self.ids, indices), predicted, probabilities)
        self.rows_written += len(indices)

    def _merge_parts(self, world_size: int) -> None:
        """Rows of every rank's part, in input order, each index once (ranks' shards may repeat a few)."""
        width = 1 + len(self.label_names)
        parts = [np.fromfile(self._part_path(r), dtype=np.float64).reshape(-1, width) for r in range(world_size)]
        index_columns = [part[:, 0].astype(np.int64) for part in parts]
        for start in range(0, len(self.ids), self.MERGE_BLOCK):
            stop = min(start + self.MERGE_BLOCK, len(self.ids))
            blocks = []
            for part, index in zip(parts, index_columns, strict=True):
                order = np.argsort(index, kind="stable")
                sorted_index = index[order]
                low, high = np.searchsorted(sorted_index, [start, stop])
                blocks.append(part[order[low:high]])
            block = np.concatenate(blocks)
            indices, first = np.unique(block[:, 0].astype(np.int64), return_index=True)
            if len(indices) != stop - start:
                raise RuntimeError(f"prediction parts miss rows {start}..{stop - 1}")
            self._write_rows(indices, block[first, 1:].astype(np.float32))

    def _require_target(self) -> Path:
        if self.target is None:
            raise RuntimeError("PredictionFileWriter.target was not set before Trainer.predict")
        return self.target


def ids_at(ids: Sequence[str], rows: np.ndarray) -> list[str]:
    """The ids of ``rows``; a store's ids in one read (one id at a time would be a read each)."""
    if isinstance(ids, LazyIds):
        return ids.take(rows)
    return [ids[int(i)] for i in rows]


def make_trainer(accelerator: str, devices: str, writer: PredictionFileWriter | None) -> pl.Trainer:
    """A quiet Trainer for prediction on ``accelerator`` x ``devices``; ``writer`` (if any) is its only callback."""
    try:
        check_accelerator(accelerator)  # the fit command's check: the same devices are accepted here
    except UserInputError as error:  # ... worded for this command's option
        raise UserInputError(str(error).replace("--trainer.accelerator", "--accelerator", 1)) from error
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    for known in (r".*does not have many workers", r".*isinstance\(treespec, LeafSpec\)` is deprecated"):
        warnings.filterwarnings("ignore", message=known)  # Lightning's, not the user's concern
    try:
        return pl.Trainer(
            accelerator=accelerator,
            devices=int(devices) if devices.isdigit() else devices,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            callbacks=[writer] if writer is not None else [],
        )
    except (ValueError, TypeError, RuntimeError, ImportError) as error:  # Lightning's refusals of these two values
        raise UserInputError(f"--accelerator {accelerator} --devices {devices}: {one_line(error)}") from error


def batches_of(data: SequenceFile, batch_size: int) -> DataLoader[Batch]:
    """The sequences of ``data`` in order, ``batch_size`` at a time, as ``predict_step`` takes them."""
    return DataLoader(SequenceRows(data), batch_size=batch_size, shuffle=False, collate_fn=_as_batch)


def predict_probabilities(
    model: pl.LightningModule, data: SequenceFile, batch_size: int = 1024, accelerator: str = "auto"
) -> np.ndarray:
    """Class probabilities of every sequence of ``data``, shape (N, classes), in order, on one device.

    The same batches and ``Trainer.predict`` as :func:`run`, returned instead of written (the Python API).
    """
    trainer = make_trainer(accelerator, "1", None)
    batches = trainer.predict(model, dataloaders=batches_of(data, batch_size), return_predictions=True) or []
    return torch.cat([torch.as_tensor(b) for b in batches]).float().cpu().numpy()


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
    ids = data.ids if data.ids is not None else [str(i) for i in range(data.num_sequences)]
    parquet = output.suffix.lower() == ".parquet"
    writer = PredictionFileWriter(ids, model.label_names, parquet, parts=output.parent / f".{output.name}")
    trainer = make_trainer(options.accelerator, options.devices, writer)
    loader = batches_of(data, options.batch_size)
    if not trainer.is_global_zero:  # a process launched for another device: rank 0 writes the file
        trainer.predict(model, dataloaders=loader, return_predictions=False)
        return output
    with atomic_output(output, overwrite=options.overwrite) as temporary:
        writer.target = temporary
        trainer.predict(model, dataloaders=loader, return_predictions=False)
    print(f"Wrote {len(ids)} predictions to {output}")
    return output


def main(args: Sequence[str] | None = None) -> Path:
    """Run ``predict.py`` on ``args`` (default: ``sys.argv[1:]``); user mistakes exit 2 with one line."""
    argv = sys.argv[1:] if args is None else list(args)
    return run_command(lambda: run(build_parser().parse_args(argv)))
