"""A memory-mapped, padded array store for long-format tables larger than memory.

:func:`prepare_store` converts a ``.csv`` or ``.parquet`` file once, streaming it in batches
(pyarrow's CSV streaming reader, Parquet row groups), into a folder next to it,
``<file>.bigru-store/``::

    x.npy        float32 (N, T, F), zeros after each sequence's end
    lengths.npy  int64 (N,)
    labels.npy   int64 (N,): index into ``label_names`` (-1 everywhere when the file has no labels)
    ids.npy      int64 or fixed-width bytes (N,): the sequence ids, in order of first appearance
    manifest.json  shapes, feature names, label names, and the source file's size and mtime

The folder is written under a temporary name and renamed into place only when complete (the
manifest is its last file), so a preparation killed at any moment leaves nothing that is ever
used: the next call removes the leftover and prepares again. A store whose manifest does not
match the source file's size and modification time is stale and rebuilt.

Reading never loads the store whole: :class:`LazyArray` reads the rows asked for with positioned
reads (``os.preadv``), one per run of consecutive rows, so the rows read live in the page cache, not
in the process's resident memory, and a data-parallel rank touches only the rows of its own shard.
(Not a memory map: a map of the file faults in whole page-cache folios around every row touched,
and 4,096 random rows of a 2.4 GB store made 2.1 GB of it resident at once.)

Memory while preparing: a batch at a time plus O(N) small integers. Rows grouped by sequence (the
usual export) take one extra pass over the id column; rows in any other order are looked up in a
hash table of the ids (slower, still bounded by the ids themselves).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from bigru_lightning.data import readers
from bigru_lightning.data.labels import normalise_labels
from bigru_lightning.data.readers import CSV_ID, CSV_LABEL, CSV_TIME, Layout
from bigru_lightning.errors import UserInputError

STORE_SUFFIX = ".bigru-store"
STORE_VERSION = 1
MANIFEST = "manifest.json"
_SEQ_CHUNK = 8192  # sequences per chunk in the passes over the written arrays


def store_path(file: Path) -> Path:
    """The store folder of ``file``: ``<file>.bigru-store`` next to it."""
    return file.with_name(file.name + STORE_SUFFIX)


def _source_key(file: Path) -> dict[str, int]:
    stat = file.stat()
    return {"size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}


# -- lazy arrays -----------------------------------------------------------------------------------
class LazyArray:
    """A ``.npy`` file read on demand: every access reads only the rows asked for.

    Indexing (``a[i]``, ``a[start:stop]``, ``a[int_array]``) returns numpy arrays, read with one
    positioned read per run of consecutive rows; the pages read stay in the page cache but never
    become part of the process's resident memory. Other indexing maps the file for the access.

    Args:
        path: A ``.npy`` file (C order).
    """

    def __init__(self, path: Path) -> None:
        header = np.load(path, mmap_mode="r")  # reads the header; mapped only until deleted below
        if not header.flags.c_contiguous:
            raise ValueError(f"{path}: only C order is read")
        self.path = path
        self.shape: tuple[int, ...] = tuple(header.shape)
        self.dtype = np.dtype(header.dtype)
        self.offset = int(header.offset)
        del header

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    @contextlib.contextmanager
    def mapped(self) -> Iterator[np.ndarray]:
        """The whole array as a read-only memory map, unmapped on exit."""
        if 0 in self.shape:
            yield np.zeros(self.shape, self.dtype)
            return
        array = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape)
        try:
            yield array
        finally:
            del array  # the last reference: unmapped now

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, np.ndarray) and index.dtype.kind in "iu" and index.ndim == 1:
            return self._read_rows(index)
        if isinstance(index, (int, np.integer)) and self.ndim > 0:  # one row: one positioned read, no map
            return self._read_rows(np.array([index], dtype=np.int64))[0]
        if isinstance(index, slice) and index.step in (None, 1) and self.ndim > 0:
            return self._read_rows(np.arange(*index.indices(self.shape[0]), dtype=np.int64))
        with self.mapped() as array:
            return np.array(array[index])

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        """The rows ``rows`` (any order, repeats allowed), read in file order with ``os.preadv``."""
        rows = rows.astype(np.int64, copy=False)
        count = self.shape[0]
        if rows.size and (int(rows.min()) < -count or int(rows.max()) >= count):
            raise IndexError(f"row index out of range for {count} rows")
        rows = np.where(rows < 0, rows + count, rows)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        if len(rows) and row_bytes:
            flat = out.reshape(len(rows), -1)
            breaks = np.flatnonzero(np.diff(ordered) != 1) + 1  # runs of consecutive rows: one read each
            starts, stops = np.append(0, breaks), np.append(breaks, len(rows))
            in_order = bool((order == np.arange(len(rows))).all())
            buffer = flat if in_order else np.empty_like(flat)  # the rows in file order
            fd = os.open(self.path, os.O_RDONLY)
            try:
                for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
                    _read_exactly(fd, buffer[start:stop].data.cast("B"), self.offset + int(ordered[start]) * row_bytes)
            finally:
                os.close(fd)
            if not in_order:
                flat[order] = buffer  # the k-th row read is row order[k] of the answer
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        with self.mapped() as array:
            return np.array(array, dtype=dtype)


def _read_exactly(fd: int, view: memoryview, offset: int) -> None:
    """Fill ``view`` from ``fd`` at ``offset`` (positioned reads may return fewer bytes: loop)."""
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise OSError(f"unexpected end of the store file at byte {offset + done}")
        done += got


class TensorRows:
    """Rows of an array (all, or those of ``index``) as the batcher's tensor: taken per batch.

    The array is a :class:`LazyArray` (rows read from the store on demand) or a NumPy array held
    in a compact type (e.g. class indices as uint8). It offers what
    :class:`~bigru_lightning.data.batching.TensorBatcher` and the DataModule use of a tensor
    (``shape``, ``device``, slicing, ``index_select(0, ...)``, ``to``, ``numel``, ``element_size``),
    each returning real tensors of only the rows asked for, converted to ``dtype`` when given.
    """

    def __init__(
        self, array: LazyArray | np.ndarray, index: np.ndarray | None = None, dtype: torch.dtype | None = None
    ) -> None:
        self.array = array
        self.index = index
        self.convert = dtype
        rows = array.shape[0] if index is None else len(index)
        self.shape = torch.Size((rows, *array.shape[1:]))
        self.device = torch.device("cpu")
        self.dtype = dtype if dtype is not None else torch.from_numpy(np.zeros(0, array.dtype)).dtype

    def _rows(self, positions: np.ndarray | slice) -> torch.Tensor:
        if self.index is not None:
            positions = self.index[positions]
        rows = torch.from_numpy(np.asarray(self.array[positions]))
        return rows if self.convert is None else rows.to(self.convert)

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, key: slice) -> torch.Tensor:
        if not isinstance(key, slice):
            raise TypeError("TensorRows supports slices of rows")
        return self._rows(key)

    def index_select(self, dim: int, index: torch.Tensor) -> torch.Tensor:
        """The rows ``index`` (dim 0 only)."""
        if dim != 0:
            raise ValueError("TensorRows selects rows (dim 0) only")
        return self._rows(index.cpu().numpy())

    def numel(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape))

    def element_size(self) -> int:
        """Bytes per element of the tensors returned."""
        return int(torch.empty(0, dtype=self.dtype).element_size())

    def to(self, device: torch.device | str) -> torch.Tensor:
        """Everything, loaded, on ``device`` (only for data small enough to cache there)."""
        return self._rows(slice(None)).to(device)


class LazyIds(Sequence[str]):
    """Sequence ids read from the store on demand (``ids[start:stop]`` reads only those)."""

    def __init__(self, array: LazyArray) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        values = self.array[index]
        if isinstance(index, slice):
            return [_id_text(v) for v in values]
        return _id_text(values)

    def take(self, rows: np.ndarray) -> list[str]:
        """The ids of ``rows`` (integers, any order), read at once."""
        return [_id_text(v) for v in self.array[np.asarray(rows, dtype=np.int64)]]

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self), _SEQ_CHUNK):
            yield from self[start : start + _SEQ_CHUNK]


def _id_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# -- the store -------------------------------------------------------------------------------------
@dataclass
class SequenceStore:
    """A prepared store, opened lazily.

    Attributes:
        path: The store folder.
        x: float32 (N, T, F).
        lengths: int64 (N,).
        labels: int64 (N,) index into ``label_names``, or None when the file has no labels.
        label_names: The distinct labels, sorted (numbers numerically, text alphabetically).
        ids: The sequence ids.
        features: The feature column names.
    """

    path: Path
    x: LazyArray
    lengths: LazyArray
    labels: LazyArray | None
    label_names: list[Any]
    ids: LazyIds
    features: list[str]

    @property
    def num_sequences(self) -> int:
        """N."""
        return self.x.shape[0]


def open_store(file: str | Path, where: str) -> SequenceStore:
    """The store of ``file``, prepared first when missing, stale or incomplete (see :func:`prepare_store`)."""
    source = Path(file)
    folder = store_path(source)
    store = _open_if_fresh(source, folder)
    if store is None:
        prepare_store(source, where)
        store = _open_if_fresh(source, folder)
        if store is None:
            raise UserInputError(f"{where}: the prepared store {folder} does not match the file (changed meanwhile?)")
    return store


def has_current_store(file: str | Path) -> bool:
    """Whether ``file`` has a complete store that matches it (its size and modification time)."""
    source = Path(file)
    return _open_if_fresh(source, store_path(source)) is not None


def _open_if_fresh(source: Path, folder: Path) -> SequenceStore | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    try:
        if manifest.get("version") != STORE_VERSION or manifest.get("source") != _source_key(source):
            return None
        x = LazyArray(folder / "x.npy")
        lengths = LazyArray(folder / "lengths.npy")
        labels = LazyArray(folder / "labels.npy")
        ids = LazyArray(folder / "ids.npy")
    except (OSError, ValueError):
        return None
    n = int(manifest["num_sequences"])
    if x.shape != (n, manifest["num_steps"], len(manifest["features"])) or any(
        a.shape != (n,) for a in (lengths, labels, ids)
    ):
        return None
    for array in (x, lengths, labels, ids):  # a truncated file is never used
        if array.path.stat().st_size < array.offset + array.dtype.itemsize * int(np.prod(array.shape)):
            return None
    return SequenceStore(
        path=folder,
        x=x,
        lengths=lengths,
        labels=labels if manifest["labelled"] else None,
        label_names=list(manifest["label_names"]),
        ids=LazyIds(ids),
        features=list(manifest["features"]),
    )


def prepare_store(file: str | Path, where: str | None = None, force: bool = False) -> Path:
    """Convert a long-format ``.csv``/``.parquet`` file into its store (a no-op when fresh, unless ``force``).

    Streams the file (bounded memory), validates it as :func:`~bigru_lightning.data.files.read_sequences`
    does, writes into a temporary folder and renames it into place. Concurrent callers (e.g. DDP
    ranks) wait on a lock and the later ones find the store ready.

    Returns:
        The store folder.
    """
    source = Path(file)
    where = where or f"--input {source}"
    if source.suffix.lower() not in readers.TABLE_SUFFIXES:
        raise UserInputError(f"{where}: only .csv and .parquet files are prepared into a store; got {source.suffix!r}")
    if not source.is_file():
        raise UserInputError(f"{where}: no such file")
    folder = store_path(source)
    with _lock(source):
        if not force and _open_if_fresh(source, folder) is not None:
            return folder
        for leftover in source.parent.glob(f".{folder.name}.*.tmp"):  # killed preparations
            shutil.rmtree(leftover, ignore_errors=True)
        key = _source_key(source)
        temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=source.parent))
        try:
            manifest = _write_arrays(source, where, temporary)
            manifest["source"] = key
            if _source_key(source) != key:
                raise UserInputError(f"{where}: the file changed while it was being prepared; try again")
            _write_atomic_json(temporary / MANIFEST, manifest)
            _fsync_dir(temporary)
            if folder.exists():
                stale = folder.with_name(f".{folder.name}.stale.tmp")
                shutil.rmtree(stale, ignore_errors=True)
                os.replace(folder, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(temporary, folder)
            _fsync_dir(source.parent)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    return folder


@contextlib.contextmanager
def _lock(source: Path) -> Iterator[None]:
    lock = source.with_name(f".{source.name}{STORE_SUFFIX}.lock")
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomic_json(path: Path, content: dict[str, Any]) -> None:
    with path.open("w") as handle:
        json.dump(content, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# -- preparation -----------------------------------------------------------------------------------
@dataclass
class _Index:
    """Where each sequence's rows go: first pass over the id column."""

    lengths: np.ndarray  # int64 (N,), rows per sequence
    grouped: bool  # every sequence's rows are contiguous: code = run number
    unique_ids: pa.Array  # the ids in order of first appearance


def _scan_ids(source: Path, where: str, layout: Layout) -> _Index:
    """Runs of equal ids over the file (one pass over the id column)."""
    run_ids: list[pa.Array] = []
    run_lengths: list[np.ndarray] = []
    last: Any = None
    for batch in readers.iter_long_batches(source, where, layout, columns=[CSV_ID]):
        ids = batch.column(CSV_ID).combine_chunks()
        if len(ids) == 0:
            continue
        changes = np.flatnonzero(pc.not_equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)) + 1
        starts = np.concatenate([[0], changes])
        lengths = np.diff(np.append(starts, len(ids)))
        if last is not None and ids[0].as_py() == last:
            run_lengths[-1][-1] += lengths[0]
            starts, lengths = starts[1:], lengths[1:]
        if len(starts):
            run_ids.append(ids.take(pa.array(starts)))
            run_lengths.append(lengths.astype(np.int64))
        last = ids[-1].as_py()
    if not run_ids:
        raise UserInputError(f"{where}: a header but no data rows")
    runs = pa.chunked_array(run_ids).combine_chunks()
    lengths = np.concatenate(run_lengths)
    unique = pc.unique(runs)
    if len(unique) == len(runs):
        return _Index(lengths=lengths, grouped=True, unique_ids=runs)
    codes = pc.index_in(runs, value_set=unique).to_numpy()
    return _Index(
        lengths=np.bincount(codes, weights=lengths, minlength=len(unique)).astype(np.int64),
        grouped=False,
        unique_ids=unique,
    )


class _UnorderedError(Exception):
    """Rows grouped by sequence but not in time order: prepare again with a time buffer."""


def _write_arrays(source: Path, where: str, folder: Path) -> dict[str, Any]:
    layout = readers.read_layout(source, where)
    index = _scan_ids(source, where, layout)
    try:  # rows grouped and in time order (the usual export) need no time buffer and no sort pass
        return _write_rows(source, where, folder, layout, index, time_buffer=not index.grouped)
    except _UnorderedError:
        return _write_rows(source, where, folder, layout, index, time_buffer=True)


def _write_rows(
    source: Path, where: str, folder: Path, layout: Layout, index: _Index, time_buffer: bool
) -> dict[str, Any]:
    n, t, f = len(index.lengths), int(index.lengths.max()), len(layout.features)
    np.save(folder / "lengths.npy", index.lengths)
    _save_ids(folder / "ids.npy", index.unique_ids)
    x = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=np.float32, shape=(n, t, f))
    x_offset = int(x.offset)
    del x  # created (sparse zeros); written batch by batch below
    labels = np.lib.format.open_memmap(folder / "labels.npy", mode="w+", dtype=np.int64, shape=(n,))
    labels[:] = -1
    del labels
    time_buffer = time_buffer and layout.time
    if time_buffer:
        times = np.lib.format.open_memmap(folder / "time.npy", mode="w+", dtype=np.float64, shape=(n, t))
        del times
    lengths = index.lengths
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    filled = None if index.grouped else np.zeros(n, dtype=np.int64)
    label_values: dict[Any, int] = {}
    row = 0
    last: tuple[int, float] | None = None  # (sequence, time) of the previous batch's last row
    with (folder / "x.npy").open("r+b") as x_file:
        for batch in readers.iter_long_batches(source, where, layout):
            size = batch.num_rows
            features = np.stack([batch.column(name).to_numpy() for name in layout.features], axis=1)
            contiguous_from: int | None = None
            if index.grouped:
                first, final = np.searchsorted(starts, [row, row + size - 1], side="right") - 1
                span = slice(int(first), int(final) + 1)
                counts = np.minimum(starts[span] + lengths[span], row + size) - np.maximum(starts[span], row)
                codes = np.repeat(np.arange(span.start, span.stop), counts)
                positions = None
                if bool((lengths[span.start : span.stop - 1] == t).all()):  # one block of x
                    contiguous_from = span.start * t + (row - int(starts[span.start]))
                if layout.time and not time_buffer:
                    last = _check_time_order(batch.column(CSV_TIME).to_numpy(), codes, last)
            else:
                assert filled is not None
                codes = pc.index_in(batch.column(CSV_ID), value_set=index.unique_ids).to_numpy().astype(np.int64)
                positions = _positions(codes, filled)
            finite = np.isfinite(features)
            if not finite.all():
                bad = int(np.argmax(~finite.all(axis=1)))
                raise UserInputError(
                    f"{where}: X contains NaN or Inf ({_row_name(source, row + bad)}, sequence "
                    f"{_id_text(index.unique_ids[int(codes[bad])].as_py())!r}); only finite numbers are accepted"
                )
            if contiguous_from is not None:
                os.pwrite(x_file.fileno(), np.ascontiguousarray(features).data, x_offset + contiguous_from * f * 4)
            else:
                if positions is None:
                    positions = np.arange(row, row + size) - starts[codes]
                _scatter(folder / "x.npy", codes, positions, features)
            if time_buffer:
                if positions is None:
                    positions = np.arange(row, row + size) - starts[codes]
                _scatter(folder / "time.npy", codes, positions, batch.column(CSV_TIME).to_numpy())
            if layout.label:
                _assign_labels(folder / "labels.npy", batch, codes, label_values, index, source, where, row)
            row += size
    names = _sorted_labels(folder, label_values, where) if layout.label else []
    if time_buffer:
        _order_by_time(folder, index, where)
        (folder / "time.npy").unlink()
    return {
        "version": STORE_VERSION,
        "num_sequences": n,
        "num_steps": t,
        "features": layout.features,
        "labelled": layout.label,
        "label_names": names,
        "rows": row,
    }


def _check_time_order(times: np.ndarray, codes: np.ndarray, last: tuple[int, float] | None) -> tuple[int, float]:
    """Raise :class:`_UnorderedError` unless ``time`` increases within each sequence (across batches too)."""
    same = codes[1:] == codes[:-1]
    if not bool((times[1:] > times[:-1])[same].all()):
        raise _UnorderedError
    if last is not None and last[0] == int(codes[0]) and not times[0] > last[1]:
        raise _UnorderedError
    return int(codes[-1]), float(times[-1])


def _row_name(source: Path, row: int) -> str:
    return f"row {row}" if readers.is_parquet(source) else f"line {row + 2}"


def _positions(codes: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Step index of each row within its sequence, in file order, continuing the counts in ``filled``."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    first = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    group_start = np.repeat(first, np.diff(np.r_[first, len(codes)]))
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes)) - group_start
    positions = filled[codes] + rank
    np.add.at(filled, sorted_codes[first], np.diff(np.r_[first, len(codes)]))
    return positions


def _scatter(path: Path, codes: np.ndarray, positions: np.ndarray, values: np.ndarray) -> None:
    """Write ``values`` at ``[codes, positions]`` of the ``.npy`` at ``path`` through a short-lived map."""
    array = np.load(path, mmap_mode="r+")
    try:
        array[codes, positions] = values
    finally:
        del array  # the last reference: unmapped now


def _assign_labels(
    path: Path,
    batch: pa.Table,
    codes: np.ndarray,
    label_values: dict[Any, int],
    index: _Index,
    source: Path,
    where: str,
    row: int,
) -> None:
    encoded = batch.column(CSV_LABEL).combine_chunks().dictionary_encode()
    local = [label_values.setdefault(value, len(label_values)) for value in encoded.dictionary.to_pylist()]
    values = np.asarray(local, dtype=np.int64)[encoded.indices.to_numpy()]
    names = {k: v for v, k in label_values.items()}
    # Runs of rows of one sequence: their labels must agree; then one representative row per run.
    run_starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    run_values = values[run_starts]
    differs = values != np.repeat(run_values, np.diff(np.r_[run_starts, len(codes)]))
    if differs.any():
        bad = int(np.argmax(differs))
        _two_labels(
            where, index, source, int(codes[bad]), names[int(values[bad - 1])], names[int(values[bad])], row + bad
        )
    run_codes = codes[run_starts]
    array = np.load(path, mmap_mode="r+")
    try:
        new = np.asarray(array[run_codes]) == -1
        array[run_codes[new][::-1]] = run_values[new][::-1]  # the last write wins: the first row of the file
        current = np.asarray(array[run_codes])
    finally:
        del array  # the last reference: unmapped now
    differs = current != run_values
    if differs.any():
        bad = int(np.argmax(differs))
        seq = int(run_codes[bad])
        _two_labels(
            where, index, source, seq, names[int(current[bad])], names[int(run_values[bad])], row + int(run_starts[bad])
        )


def _two_labels(where: str, index: _Index, source: Path, seq: int, previous: Any, label: Any, row: int) -> NoReturn:
    raise UserInputError(
        f"{where}: sequence {_id_text(index.unique_ids[seq].as_py())!r} has two labels ({str(previous)!r}, "
        f"{str(label)!r} on {_row_name(source, row)}); one label per sequence"
    )


def _sorted_labels(folder: Path, label_values: dict[Any, int], where: str) -> list[Any]:
    """Renumber the labels by sorted value (as the in-memory reader does) and return the sorted names."""
    raw = list(label_values)
    if not raw:
        return []
    normal = normalise_labels(np.asarray(raw), where)
    order = np.argsort(normal, kind="stable")
    names = [normal[k].item() for k in order]
    renumber = np.empty(len(raw), dtype=np.int64)
    renumber[order] = np.arange(len(raw))
    array = np.load(folder / "labels.npy", mmap_mode="r+")
    try:
        for start in range(0, len(array), _SEQ_CHUNK * 16):
            chunk = array[start : start + _SEQ_CHUNK * 16]
            chunk[:] = renumber[chunk]
    finally:
        del array  # the last reference: unmapped now
    return names


def _order_by_time(folder: Path, index: _Index, where: str) -> None:
    """Sort each sequence's steps by ``time`` (chunks of sequences); a repeated time is an error."""
    x = np.load(folder / "x.npy", mmap_mode="r+")
    times = np.load(folder / "time.npy", mmap_mode="r")
    try:
        steps = np.arange(x.shape[1])
        for start in range(0, x.shape[0], _SEQ_CHUNK):
            lengths = index.lengths[start : start + _SEQ_CHUNK]
            chunk_times = np.where(steps[None, :] < lengths[:, None], times[start : start + _SEQ_CHUNK], np.inf)
            order = np.argsort(chunk_times, axis=1, kind="stable")
            sorted_times = np.take_along_axis(chunk_times, order, axis=1)
            repeated = (sorted_times[:, 1:] == sorted_times[:, :-1]) & np.isfinite(sorted_times[:, 1:])
            if repeated.any():
                seq = start + int(np.argmax(repeated.any(axis=1)))
                raise UserInputError(
                    f"{where}: sequence {_id_text(index.unique_ids[seq].as_py())!r} repeats a value of '{CSV_TIME}'"
                )
            if (order != steps[None, :]).any():
                chunk = x[start : start + _SEQ_CHUNK]
                chunk[:] = np.take_along_axis(np.asarray(chunk), order[:, :, None], axis=1)
    finally:
        del x, times  # unmapped now


def _save_ids(path: Path, ids: pa.Array) -> None:
    if pa.types.is_integer(ids.type):
        np.save(path, ids.to_numpy().astype(np.int64))
        return
    text = ids.cast(pa.string())
    width = max(1, int(pc.max(pc.binary_length(text)).as_py() or 1))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=f"S{width}", shape=(len(text),))
    try:
        for start in range(0, len(text), _SEQ_CHUNK * 16):
            chunk = text.slice(start, _SEQ_CHUNK * 16).to_numpy(zero_copy_only=False)
            out[start : start + len(chunk)] = np.char.encode(chunk.astype(str), "utf-8")
    finally:
        del out
