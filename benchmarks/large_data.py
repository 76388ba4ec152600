"""Large data: read times and peak memory of long-format CSV/Parquet, and the store at scale.

    python benchmarks/large_data.py                    # everything (issue 13's sizes; long)
    python benchmarks/large_data.py --read-only         # the 2,000,000-row CSV and Parquet reads
    python benchmarks/large_data.py --sizes 100000 --steps 20   # a quick check of the pipeline

Every stage runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its own.
Stages: write the files (CSV and Parquet written in chunks / row groups, never whole in memory),
read the 40,000 x 50 x 3 table into memory (``read_sequences``, pyarrow), prepare the store
(``prepare_store``, streaming), train ``--steps`` steps at ``--batch`` on the store
(``FileDataModule(store=True)``, ``Trainer(max_steps=...)``), predict the whole file with
``scripts/predict.py`` (it reads the store batch by batch and writes the rows as they come).
Everything written goes into a temporary folder (``--workdir``) that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STEPS, FEATURES = 50, 3
ROWS_PER_GROUP = 1_000_000


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- stages (each runs in its own process) ----------------------------------------------------------
def stage_write(path: str, sequences: int) -> dict[str, Any]:
    """Write ``sequences`` x 50 x 3 in long format, chunk by chunk (CSV) or row group by row group (Parquet)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    start = time.perf_counter()
    per_chunk = ROWS_PER_GROUP // STEPS
    rng = np.random.default_rng(0)
    schema = pa.schema(
        [("sequence_id", pa.int64()), ("label", pa.int64()), ("time", pa.int64())]
        + [(f"f{k}", pa.float32()) for k in range(FEATURES)]
    )
    writer: Any = pq.ParquetWriter(path, schema) if path.endswith(".parquet") else pacsv.CSVWriter(path, schema)
    with writer:
        for first in range(0, sequences, per_chunk):
            n = min(per_chunk, sequences - first)
            ids = np.repeat(np.arange(first, first + n, dtype=np.int64), STEPS)
            labels = ids % 3
            x = rng.standard_normal((n * STEPS, FEATURES)).astype(np.float32)
            x[:, 0] += (labels - 1) * 0.5  # a learnable signal
            columns = [pa.array(ids), pa.array(labels), pa.array(np.tile(np.arange(STEPS), n))]
            columns += [pa.array(x[:, k]) for k in range(FEATURES)]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
    return {"seconds": time.perf_counter() - start, "bytes": Path(path).stat().st_size, "rows": sequences * STEPS}


def stage_read(path: str) -> dict[str, Any]:
    """Read the whole file into memory (``read_sequences``)."""
    from bigru_lightning.data import read_sequences

    before = _rss_mb()
    start = time.perf_counter()
    data = read_sequences(path, require_labels=True, store=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "added_mb": _peak_mb() - before, "shape": list(data.x.shape)}


def stage_prepare(path: str) -> dict[str, Any]:
    """Convert the file into its memory-mapped store."""
    from bigru_lightning.data.store import open_store, prepare_store

    start = time.perf_counter()
    prepare_store(path, force=True)
    seconds = time.perf_counter() - start
    store = open_store(path, "--input")
    rows = store.num_sequences * STEPS
    return {"seconds": seconds, "rows_per_s": rows / seconds, "sequences": store.num_sequences}


def stage_train(path: str, steps: int, batch: int) -> dict[str, Any]:
    """Train ``steps`` steps at ``batch`` sequences on the store; save a checkpoint for the predict stage."""
    import lightning.pytorch as pl
    import torch

    from bigru_lightning.cli import hand_data_facts_to_model
    from bigru_lightning.data import FileDataModule
    from bigru_lightning.module import BiGRUClassifier

    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    start = time.perf_counter()
    data = FileDataModule(path, batch_size=batch, store=True, val_fraction=0.01, test_fraction=0.01)
    model = BiGRUClassifier(input_size=data.num_features, num_classes=data.num_classes)
    data.setup("fit")
    hand_data_facts_to_model(data, model)  # standardisation and label names, as scripts/fit.py does
    trainer = pl.Trainer(
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(path + ".ckpt")
    return {"seconds": time.perf_counter() - start, "steps": trainer.global_step}


def stage_predict(path: str, batch: int) -> dict[str, Any]:
    """Predict every sequence of the file with ``scripts/predict.py`` (Trainer.predict, rows written as they come)."""
    from bigru_lightning.predict import main as predict

    start = time.perf_counter()
    output = predict(
        [
            *("--ckpt_path", path + ".ckpt", "--input", path, "--output", path + ".predictions.csv"),
            *("--batch_size", str(batch), "--accelerator", "cpu"),
        ]
    )
    with open(output, "rb") as handle:
        rows = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b"")) - 1  # minus the header
    return {"seconds": time.perf_counter() - start, "sequences": rows}


STAGES = {
    "write": stage_write,
    "read": stage_read,
    "prepare": stage_prepare,
    "train": stage_train,
    "predict": stage_predict,
}


# -- the driver --------------------------------------------------------------------------------------
def run_stage(name: str, *args: Any) -> dict[str, Any]:
    """Run one stage in a fresh process; its result plus its peak RSS in MiB."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, __file__, "--stage", name, *[str(a) for a in args]]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1])
    if done.returncode != 0:
        raise SystemExit(f"stage {name} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{name:8s} {' '.join(map(str, args))}: {json.dumps(result)}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--read-sequences", type=int, default=40_000, help="sequences of the read test")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the read test (interleaved)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 4_000_000], help="sequences per run")
    parser.add_argument("--steps", type=int, default=300, help="training steps per run")
    parser.add_argument("--batch", type=int, default=4096, help="batch size of training and prediction")
    parser.add_argument("--read-only", action="store_true", help="only the read test")
    parser.add_argument("--workdir", default=None, help="where to write (default: a temporary folder)")
    options = parser.parse_args()
    if options.stage:
        print(json.dumps({**STAGES[options.stage](*_typed(options.args)), "peak_rss_mb": round(_peak_mb(), 1)}))
        return
    folder = Path(tempfile.mkdtemp(prefix="bigru-large-", dir=options.workdir))
    summary: dict[str, Any] = {}
    # SIGTERM (a job scheduler, `timeout`) ends the run like Ctrl-C: the running stage is killed by
    # subprocess.run and the folder of written files is removed below, never left behind.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        csv_path, parquet_path = str(folder / "read.csv"), str(folder / "read.parquet")
        size = run_stage("write", csv_path, options.read_sequences)["bytes"]
        run_stage("write", parquet_path, options.read_sequences)
        reads: dict[str, list[dict[str, Any]]] = {"csv": [], "parquet": []}
        for _ in range(options.rounds):  # interleaved
            reads["csv"].append(run_stage("read", csv_path))
            reads["parquet"].append(run_stage("read", parquet_path))
        summary["read"] = {"csv_bytes": size, **{k: _spread(v) for k, v in reads.items()}}
        for path in (csv_path, parquet_path):
            os.unlink(path)
        if not options.read_only:
            for sequences in options.sizes:
                path = str(folder / f"n{sequences}.parquet")
                run: dict[str, Any] = {"write": run_stage("write", path, sequences)}
                run["prepare"] = run_stage("prepare", path)
                run["train"] = run_stage("train", path, options.steps, options.batch)
                run["predict"] = run_stage("predict", path, options.batch)
                run["peak_rss_mb"] = max(stage["peak_rss_mb"] for stage in run.values())
                summary[str(sequences)] = run
                for leftover in folder.glob(f"n{sequences}.parquet*"):
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(summary, indent=1))


def _spread(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and range of seconds, added memory and peak RSS over rounds."""
    out: dict[str, Any] = {}
    for key in ("seconds", "added_mb", "peak_rss_mb"):
        values = sorted(float(r[key]) for r in results)
        out[key] = {
            "median": round(values[len(values) // 2], 3),
            "min": round(values[0], 3),
            "max": round(values[-1], 3),
        }
    return out


def _typed(args: list[str]) -> list[Any]:
    return [int(a) if a.isdigit() else a for a in args]


if __name__ == "__main__":
    main()
