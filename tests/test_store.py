"""The memory-mapped store: streaming preparation, lazy reads, cache keys, killed preparations, shards."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bigru_lightning.data import FileDataModule, TensorBatcher, read_sequences
from bigru_lightning.data.labels import EncodedLabels
from bigru_lightning.data.store import LazyArray, TensorRows, open_store, prepare_store, store_path
from bigru_lightning.errors import UserInputError
from bigru_lightning.prepare import main as prepare_main

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pacsv = pytest.importorskip("pyarrow.csv")

ROOT = Path(__file__).resolve().parents[1]


def _table(
    n: int,
    seed: int = 0,
    interleave: bool = False,
    text_ids: bool = True,
    time_col: bool = True,
    equal: bool = False,
) -> object:
    """A long table of ``n`` sequences of 1..9 steps (7 when ``equal``: then in time order) x 2 features."""
    rng = np.random.default_rng(seed)
    lengths = np.full(n, 7) if equal else rng.integers(1, 10, n)
    seq = np.repeat(np.arange(n), lengths)
    step = np.concatenate([rng.permutation(k) if time_col and not equal else np.arange(k) for k in lengths])
    values = rng.standard_normal((len(seq), 2)).astype(np.float32)
    order = rng.permutation(len(seq)) if interleave else np.arange(len(seq))
    columns: dict[str, object] = {
        "sequence_id": [f"id{v}" for v in seq[order]] if text_ids else seq[order] * 7 + 1,
        "label": np.array(["a", "b", "c"])[seq[order] % 3],
    }
    if time_col:
        columns["time"] = step[order] * 0.5
    columns["f1"], columns["f2"] = values[order, 0], values[order, 1]
    return pa.table(columns)


def _write(table: object, path: Path) -> Path:
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path, row_group_size=1000)
    return path


CASES = {
    "csv_grouped_time": (".csv", {}),
    "csv_interleaved": (".csv", {"interleave": True}),
    "parquet_grouped_int_ids": (".parquet", {"text_ids": False, "time_col": False}),
    "parquet_interleaved": (".parquet", {"interleave": True}),
    "parquet_grouped_in_order": (".parquet", {"equal": True}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_store_reads_what_the_in_memory_reader_reads(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bigru_lightning.data.readers._PARQUET_BATCH", 1000)  # sequences cross batches
    suffix, options = CASES[case]
    path = _write(_table(700, seed=1, **options), tmp_path / f"d{suffix}")  # type: ignore[arg-type]
    expected = read_sequences(path, require_labels=True, store=False)
    lazy = read_sequences(path, require_labels=True, store=True)
    assert isinstance(lazy.x, LazyArray)  # nothing read yet
    assert lazy.x.shape == expected.x.shape
    np.testing.assert_array_equal(np.asarray(lazy.x), expected.x)
    assert lazy.ids is not None and expected.ids is not None and list(lazy.ids) == list(expected.ids)
    assert lazy.ids[3] == str(expected.ids[3])  # one id: text, not a NumPy scalar's repr
    if expected.lengths is None:  # every sequence full length
        assert lazy.lengths is None and case == "parquet_grouped_in_order"
    else:
        assert lazy.lengths is not None and lazy.lengths.tolist() == expected.lengths.tolist()
    assert isinstance(lazy.labels, EncodedLabels) and isinstance(expected.labels, np.ndarray)
    assert lazy.labels.values().tolist() == expected.labels.tolist()
    assert lazy.labels.codes.dtype == np.uint8  # N small integers, not N labels


def test_datamodule_on_the_store_equals_the_in_memory_path(tmp_path: Path) -> None:
    path = _write(_table(300, seed=2), tmp_path / "d.parquet")
    memory = FileDataModule(str(path), batch_size=16, store=False)
    stored = FileDataModule(str(path), batch_size=16, store=True)
    memory.setup("fit")
    stored.setup("fit")
    assert memory.label_names == stored.label_names == ["a", "b", "c"]
    for name in ("train_split", "val_split", "test_split"):
        a, b = getattr(memory, name), getattr(stored, name)
        assert isinstance(b.x, TensorRows)
        assert isinstance(b.y, TensorRows) and isinstance(b.lengths, TensorRows)  # taken per batch, no copy
        assert b.y.array.dtype == np.uint8 and b.y.index is not None and b.y.index.dtype == np.int32
        assert torch.equal(a.y, b.y[:]) and torch.equal(a.lengths, b.lengths[:])
        np.testing.assert_array_equal(a.x.numpy(), b.x[0 : len(b)].numpy())
    assert memory.feature_mean is not None and stored.feature_mean is not None
    torch.testing.assert_close(memory.feature_mean, stored.feature_mean)
    for batch_a, batch_b in zip(memory.train_dataloader(), stored.train_dataloader(), strict=True):
        for t_a, t_b in zip(batch_a, batch_b, strict=True):
            assert t_a.dtype == t_b.dtype and torch.equal(t_a, t_b)


def test_reads_leave_no_mapping_behind(tmp_path: Path) -> None:
    path = _write(_table(200, seed=3), tmp_path / "d.parquet")
    store = open_store(path, "data.train_file")
    rows = TensorRows(store.x, np.arange(0, 200, 3))
    batch = rows.index_select(0, torch.tensor([5, 1, 60]))
    np.testing.assert_array_equal(batch.numpy(), store.x[np.array([15, 3, 180])])
    maps = Path("/proc/self/maps").read_text()
    assert str(store.path / "x.npy") not in maps  # pages read went to the page cache, not our memory


def test_row_reads_never_map_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows and slices are positioned reads: a map faults in whole page-cache folios around each row.

    (4,096 random rows of a 2.4 GB store made 2.1 GB resident through a map; benchmarks/large_data.py.)
    """
    path = _write(_table(300, seed=4), tmp_path / "d.parquet")
    store = open_store(path, "data.train_file")
    expected = np.load(store.path / "x.npy")
    expected_ids = np.load(store.path / "ids.npy")

    def no_map(*args: object, **kwargs: object) -> None:
        raise AssertionError("a row read mapped the store file")

    monkeypatch.setattr(np, "memmap", no_map)
    rng = np.random.default_rng(0)
    for index in (
        rng.permutation(300)[:37],  # any order
        np.array([5, 3, 3, 4, -1, 0, 1, 2, 299]),  # repeats, a negative index, runs of consecutive rows
        np.arange(40, 90),  # one run: one read
        np.array([], dtype=np.int64),
        np.array([7], dtype=np.int32),
    ):
        np.testing.assert_array_equal(store.x[index], expected[index])
        np.testing.assert_array_equal(store.ids.array[index], expected_ids[index])  # fixed-width text rows
    for part in (slice(10, 20), slice(-5, None), slice(20, 10), slice(None)):
        np.testing.assert_array_equal(store.x[part], expected[part])
    assert list(store.ids[0:3]) == [v.decode() if isinstance(v, bytes) else str(v) for v in expected_ids[0:3]]
    with pytest.raises(IndexError):
        store.x[np.array([300])]


def test_each_rank_reads_only_its_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(_table(100, seed=4, time_col=False), tmp_path / "d.parquet")
    store = open_store(path, "data.train_file")
    read: list[int] = []
    original = LazyArray.__getitem__

    def spy(self: LazyArray, index: object) -> np.ndarray:
        if self is store.x:
            read.extend(np.arange(self.shape[0])[index].tolist())  # type: ignore[index]
        return original(self, index)

    monkeypatch.setattr(LazyArray, "__getitem__", spy)
    seen: list[set[int]] = []
    for rank in range(2):
        read.clear()
        rows = TensorRows(store.x)
        tags = torch.arange(100)
        batcher = TensorBatcher((rows, tags), batch_size=8, shuffle=True, seed=1, rank=rank, world_size=2)  # type: ignore[arg-type]
        got = set()
        for x, tag in batcher:
            assert x.shape[0] == tag.shape[0]
            np.testing.assert_array_equal(x.numpy(), store.x[tag.numpy()])
            got |= set(tag.tolist())
        assert set(read) == got and len(got) == 50  # read exactly the rows of this rank's shard
        seen.append(got)
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(100))


def test_changed_file_is_prepared_again(tmp_path: Path) -> None:
    path = _write(_table(50, seed=5), tmp_path / "d.csv")
    first = open_store(path, "data.train_file")
    assert first.num_sequences == 50
    manifest = (store_path(path) / "manifest.json").stat().st_mtime_ns
    assert open_store(path, "data.train_file").path == first.path  # fresh: reused, not rebuilt
    assert (store_path(path) / "manifest.json").stat().st_mtime_ns == manifest
    _write(_table(60, seed=6), path)  # another size
    assert open_store(path, "data.train_file").num_sequences == 60
    stat = path.stat()
    text = path.read_text().replace('"id0",', '"zd0",')  # the same size, another content ...
    path.write_text(text)
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # ... and a new mtime
    ids = list(open_store(path, "data.train_file").ids)
    assert "zd0" in ids and "id0" not in ids


def test_store_errors_are_the_readers_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("sequence_id,label,x\na,0,1\na,1,2\n")
    with pytest.raises(UserInputError, match=r"bad.csv: sequence 'a' has two labels \('0', '1' on line 3\)"):
        read_sequences(bad, require_labels=True, store=True)
    nan = tmp_path / "nan.csv"
    nan.write_text("sequence_id,label,x\na,0,1\na,0,nan\n")
    with pytest.raises(UserInputError, match=r"nan.csv: X contains NaN or Inf \(line 3"):
        read_sequences(nan, require_labels=True, store=True)
    text = tmp_path / "text.csv"
    text.write_text("sequence_id,label,x\na,0,1\na,0,zz\n")
    with pytest.raises(UserInputError, match=r"line 3, column 'x': 'zz' is not a number"):
        read_sequences(text, require_labels=True, store=True)
    assert not list(tmp_path.glob("*.bigru-store")) and not list(tmp_path.glob(".*.tmp"))  # nothing left


def test_killed_preparation_is_never_used_and_is_rebuilt(tmp_path: Path) -> None:
    path = _write(_table(20_000, seed=7, interleave=True), tmp_path / "big.parquet")
    expected = read_sequences(path, require_labels=True, store=False)
    code = f"from bigru_lightning.data.store import prepare_store; prepare_store({str(path)!r}, force=True)"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    rng = random.Random(0)
    start = time.monotonic()
    full = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    duration = time.monotonic() - start
    assert full.returncode == 0
    killed = 0
    for _ in range(4):
        process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
        time.sleep(rng.uniform(0.3, 1.0) * duration)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            killed += 1
        process.wait()
        # Whatever moment it died at, the store is either the previous complete one or absent.
        store = read_sequences(path, require_labels=True, store=True)
        np.testing.assert_array_equal(np.asarray(store.x), expected.x)
        assert store.ids is not None and list(store.ids) == expected.ids
    assert killed >= 2
    prepare_store(path, force=True)
    assert not list(tmp_path.glob(".*.tmp"))  # the next preparation removed the leftovers


def test_incomplete_store_folder_is_not_used(tmp_path: Path) -> None:
    path = _write(_table(80, seed=8), tmp_path / "d.parquet")
    store = open_store(path, "data.train_file")
    x_file = store.path / "x.npy"
    with x_file.open("r+b") as handle:
        handle.truncate(x_file.stat().st_size // 2)  # e.g. a disk that filled up
    again = read_sequences(path, require_labels=True, store=True)
    assert np.asarray(again.x).shape == (80, 9, 2)
    (store_path(path) / "manifest.json").unlink()
    assert open_store(path, "data.train_file").num_sequences == 80


def test_prepare_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(_table(30, seed=9), tmp_path / "d.parquet")
    assert prepare_main([str(path)]) == [store_path(path)]
    assert "30x9x2 (sequences x steps x features)" in capsys.readouterr().out
    manifest = (store_path(path) / "manifest.json").stat().st_mtime_ns
    prepare_store(path)  # up to date: left alone
    assert (store_path(path) / "manifest.json").stat().st_mtime_ns == manifest
    with pytest.raises(SystemExit) as caught:
        prepare_main([str(tmp_path / "x.npz")])
    assert caught.value.code == 2
    assert "only .csv and .parquet files are prepared" in capsys.readouterr().err


def test_the_file_data_default_trains_on_the_store_as_in_memory(in_tmp: Path) -> None:
    """scripts/fit.py's recipe (random kernels fitted on the split, FCN branch) on a store-backed file.

    The random-kernel fit picks training rows by index: the store's rows must serve it, and the run
    must end where the in-memory run of the same file ends.
    """
    from bigru_lightning.cli import main

    path = _write(_table(240, seed=5), in_tmp / "d.parquet")
    args = ["--data", "FileDataModule", "--data.train_file", str(path), "--trainer.max_epochs", "2"]
    stored = main([*args, "--data.store", "true"])
    assert store_path(path).is_dir()  # it went through the store
    memory = main([*args, "--data.store", "false"])
    assert stored["test/acc"] == memory["test/acc"]
    assert stored["test/loss"] == pytest.approx(memory["test/loss"], rel=1e-4)


def test_store_is_chosen_by_rows_or_an_existing_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bigru_lightning.data import files, readers

    table = _table(300, seed=6)
    for suffix in (".csv", ".parquet"):
        path = _write(table, tmp_path / f"d{suffix}")
        rows = readers.estimated_rows(path)
        assert rows == table.num_rows if suffix == ".parquet" else abs(rows - table.num_rows) <= 1  # header
        assert not files.uses_store(path, None)  # small, never prepared: in memory
        assert files.uses_store(path, True) and not files.uses_store(path, False)
        monkeypatch.setattr(files, "STORE_AUTO_ROWS", table.num_rows // 2)
        assert files.uses_store(path, None)  # large: through the store
        monkeypatch.undo()
        prepare_store(path)
        assert files.uses_store(path, None)  # prepared before: read from its store
        assert not files.uses_store(path, False)


def test_csv_row_estimate_scales_from_the_first_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bigru_lightning.data import readers

    path = _write(_table(3000, seed=7), tmp_path / "d.csv")
    monkeypatch.setattr(readers, "_BLOCK", 4096)  # the file is many blocks long
    exact = path.read_bytes().count(b"\n")
    assert abs(readers.estimated_rows(path) - exact) < 0.1 * exact


def test_predict_through_the_store_writes_what_the_in_memory_read_writes(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scripts/predict.py on a store-backed file: the same rows, and the ids read a batch at a time."""
    from bigru_lightning.cli import main as fit
    from bigru_lightning.data.store import LazyArray
    from bigru_lightning.predict import main as predict

    table = _table(300, seed=8, interleave=True)
    path = _write(table, in_tmp / "d.parquet")
    fit(["--data", "FileDataModule", "--data.train_file", str(path), "--trainer.max_epochs", "1"])
    ckpt = str(next((in_tmp / "lightning_logs").rglob("*.ckpt")))
    args = ["--ckpt_path", ckpt, "--batch_size", "64", "--accelerator", "cpu"]
    predict([*args, "--input", str(path), "--output", "memory.csv"])  # small, never prepared: in memory
    prepare_store(path)
    reads: list[str] = []
    real_read = LazyArray._read_rows

    def counted(self: LazyArray, rows: np.ndarray) -> np.ndarray:
        reads.append(self.path.name)
        return real_read(self, rows)

    monkeypatch.setattr(LazyArray, "_read_rows", counted)
    predict([*args, "--input", str(path), "--output", "stored.csv"])  # a current store: read through it
    assert (in_tmp / "stored.csv").read_text() == (in_tmp / "memory.csv").read_text()
    assert reads.count("x.npy") == 5 and reads.count("ids.npy") <= 5  # 300 rows, batches of 64
