"""Readers for the user's own sequence files, chosen by suffix: ``.npz``, ``.csv``/``.parquet`` (long), ``.ts``.

Every reader returns one :class:`SequenceFile`: sequences stacked as ``(N, T, F)`` float32, padded
with zeros at the end, the true ``lengths`` where they differ, the raw ``labels`` (ints or strings)
and the sequence ids where the file has them. Nothing a reader reads is ever evaluated: ``.npz``
files are opened with ``allow_pickle=False`` (object arrays are refused), CSV cells are parsed as
numbers, and ``.ts`` files go through aeon's parser. Every problem is a :class:`UserInputError`
whose one-line message names the parameter, the file and what is accepted.

Formats:
    ``.npz``: arrays ``X`` of shape (N, T, F) or (N, T) (numbers), ``y`` of shape (N,) (ints or
    strings), optional ``lengths`` (N,) (ints in [1, T]) and ``sequence_id`` (N,). Members stored
    uncompressed (``np.savez``) are memory-mapped rather than read whole.

    ``.csv`` and ``.parquet`` (long format, read by pyarrow, see :mod:`.readers`): one row per time
    step, columns ``sequence_id``, ``label`` and optionally ``time`` (the order of steps within a
    sequence; without it, the file's order), every other column a numeric feature. Rows may come in
    any order; sequences may have different lengths. Files larger than memory: :mod:`.store`.

    ``.ts``: the UCR/UEA time series classification format, read by ``aeon`` (``pip install .[ts]``).
"""

from __future__ import annotations

import functools
import math
import struct
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bigru_lightning.data.labels import EncodedLabels, normalise_labels, smallest_index_type
from bigru_lightning.data.readers import CSV_LABEL, estimated_rows
from bigru_lightning.data.sequences import SequenceFile as SequenceFile
from bigru_lightning.errors import UserInputError

SUFFIXES = (".npz", ".csv", ".parquet", ".pq", ".ts")
ACCEPTED = "accepted: .npz (X, y), .csv or .parquet (columns sequence_id, label[, time], features), .ts (UCR/UEA)"
_CHUNK = 4096  # sequences per chunk when scanning large arrays
# .csv/.parquet files of this many rows or more are read through the store: in memory, a row of three
# features costs about 70 bytes at the read's peak (benchmarks/large_data.py), so 5 million rows ~ 350 MB.
STORE_AUTO_ROWS = 5_000_000


def read_sequences(
    path: str | Path, require_labels: bool, param: str = "data.train_file", store: bool | None = None
) -> SequenceFile:
    """Read a sequence file, chosen by its suffix, and validate it.

    Args:
        path: A ``.npz``, ``.csv``, ``.parquet`` or ``.ts`` file, or the ``memory://`` name of sequences
            held in memory by :func:`~.memory.held_in_memory`.
        require_labels: Refuse a file without labels (training needs them; prediction does not).
        param: The parameter that named the file, for error messages (e.g. ``data.train_file``).
        store: For ``.csv``/``.parquet``: read through the memory-mapped store (prepared once and
            cached next to the file, see :mod:`.store`) instead of into memory; then ``x`` and
            ``ids`` are read lazily. None: when the file has a current store already (prepared
            earlier) or at least ``STORE_AUTO_ROWS`` rows (:func:`uses_store`).

    Raises:
        UserInputError: The file is missing, empty, of an unknown format or malformed.

    The last file read is kept while it is unchanged (same size and modification time), so the
    recipe's look at the training file and the data module's read of it cost one read.
    """
    from bigru_lightning.data.memory import is_memory_name, memory_sequences  # it imports this module

    if is_memory_name(path):  # arrays held by the Python API: read like a file, validated the same way
        data = memory_sequences(str(path), f"{param} {path}")
        _validate(data, f"{param} {path}", require_labels)
        return data
    file = Path(path)
    where = f"{param} {file}"
    suffix = file.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserInputError(f"{where}: unknown file format {file.suffix or '(no suffix)'!r}; {ACCEPTED}")
    if not file.is_file():
        raise UserInputError(f"{where}: no such file")
    try:
        stat = file.stat()
        with file.open("rb"):
            pass
    except OSError as error:
        raise UserInputError(f"{where}: cannot be read ({error.strerror or error})") from error
    identity = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    # Decided before the cache: a store prepared since the last read changes how the file is read.
    through_store = suffix in (".csv", ".parquet", ".pq") and uses_store(file, store)
    return _read_unchanged(str(file), identity, require_labels, where, through_store)


@functools.lru_cache(maxsize=1)
def _read_unchanged(
    path: str, identity: tuple[str, int, int], require_labels: bool, where: str, through_store: bool
) -> SequenceFile:
    """:func:`read_sequences` of ``path``, which exists and is readable.

    ``identity`` (absolute path, size, modification time in ns) is part of the cache key only.
    """
    file = Path(path)
    size = identity[1]
    suffix = file.suffix.lower()
    if size == 0:
        raise UserInputError(f"{where}: the file is empty; {ACCEPTED}")
    if through_store:
        return _read_store(file, where, require_labels)
    if suffix == ".npz":
        result = _read_npz(file, where)
    elif suffix in (".csv", ".parquet", ".pq"):
        result = _read_table(file, where)
    else:
        result = _read_ts(file, where)
    _validate(result, where, require_labels)
    return result


def uses_store(file: Path, store: bool | None) -> bool:
    """Whether the long-format ``file`` is read through its store.

    ``store`` when given; otherwise when a current store of it exists or it has ``STORE_AUTO_ROWS``
    rows or more (read into memory, a file takes several times its size on disk: a Parquet file of 50
    million rows, 0.7 GB, took 3.4 GB).
    """
    if store is not None:
        return store
    from bigru_lightning.data.store import has_current_store

    return has_current_store(file) or estimated_rows(file) >= STORE_AUTO_ROWS


# -- validation shared by every format -------------------------------------------------------------
def _validate(data: SequenceFile, where: str, require_labels: bool) -> None:
    n, t = data.num_sequences, data.num_steps
    if n == 0 or t == 0 or data.num_features == 0:
        raise UserInputError(
            f"{where}: no data (X has shape {tuple(data.x.shape)}); need at least one step of one feature"
        )
    for start in range(0, n, _CHUNK):
        chunk = np.asarray(data.x[start : start + _CHUNK])
        if not np.isfinite(chunk).all():
            bad = start + int(np.argwhere(~np.isfinite(chunk))[0][0])
            raise UserInputError(
                f"{where}: X contains NaN or Inf (first in sequence {bad}); only finite numbers are accepted "
                "(pad with zeros and give lengths)"
            )
    if data.lengths is not None:
        if data.lengths.shape != (n,):
            raise UserInputError(f"{where}: lengths has shape {data.lengths.shape}; expected ({n},), one per sequence")
        out_of_range = (data.lengths < 1) | (data.lengths > t)
        if out_of_range.any():
            i = int(np.argmax(out_of_range))
            raise UserInputError(
                f"{where}: lengths[{i}] = {int(data.lengths[i])} is out of range; each length must lie in [1, {t}] (T)"
            )
        if bool((data.lengths == t).all()):
            data.lengths = None  # every sequence is full length: no packing needed
    if data.labels is None:
        if require_labels:
            raise UserInputError(f"{where}: the file has no labels; training needs them ({_label_hint(data.path)})")
    elif data.labels.shape != (n,):
        raise UserInputError(f"{where}: {data.labels.size} labels for {n} sequences; need one label per sequence")
    if data.ids is not None and len(data.ids) != n:
        raise UserInputError(f"{where}: {len(data.ids)} sequence ids for {n} sequences; need one per sequence")


def _label_hint(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "an array 'y' of shape (N,)"
    if suffix in (".csv", ".parquet", ".pq"):
        return f"a '{CSV_LABEL}' column"
    return "a .ts file with @classLabel true and a label after each case"


# -- .npz ------------------------------------------------------------------------------------------
def _read_npz(file: Path, where: str) -> SequenceFile:
    try:
        with zipfile.ZipFile(file) as archive:
            members = {Path(name).stem: archive.getinfo(name) for name in archive.namelist() if name.endswith(".npy")}
    except (zipfile.BadZipFile, OSError) as error:
        raise UserInputError(f"{where}: not a valid .npz archive ({error}); save one with numpy.savez") from error
    if "X" not in members:
        found = ", ".join(sorted(members)) or "none"
        raise UserInputError(f"{where}: no array 'X' (arrays found: {found}); need X (N, T, F) or (N, T)")
    arrays = {name: _npz_member(file, info, name, where) for name, info in members.items()}
    x = arrays["X"]
    if x.dtype.kind not in "fiub":
        raise UserInputError(f"{where}: X has dtype {x.dtype}; it must hold numbers")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise UserInputError(f"{where}: X has shape {x.shape} (rank {x.ndim}); accepted: (N, T, F) or (N, T)")
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    n = x.shape[0]
    lengths = None
    if "lengths" in arrays:
        raw = arrays["lengths"]
        if raw.dtype.kind not in "iu" or raw.shape != (n,):
            raise UserInputError(
                f"{where}: lengths must be integers of shape ({n},), one per sequence of X; got {raw.dtype} {raw.shape}"
            )
        lengths = np.array(raw, dtype=np.int64)
    labels = None
    if "y" in arrays:
        y = np.array(arrays["y"])
        if y.ndim != 1 or y.shape[0] != n:
            raise UserInputError(f"{where}: y has shape {y.shape}; need ({n},), one label per sequence of X")
        labels = normalise_labels(y, where)
    ids = None
    if "sequence_id" in arrays:
        raw_ids = np.array(arrays["sequence_id"])
        if raw_ids.shape != (n,):
            raise UserInputError(f"{where}: sequence_id has shape {raw_ids.shape}; need ({n},)")
        ids = [str(v) for v in raw_ids]
    return SequenceFile(x=x, lengths=lengths, labels=labels, ids=ids, path=file)


def _npz_member(file: Path, info: zipfile.ZipInfo, name: str, where: str) -> np.ndarray:
    """One array of the archive: memory-mapped when stored uncompressed, else read (never unpickled)."""
    if info.compress_type == zipfile.ZIP_STORED:
        mapped = _memmap_stored_npy(file, info)
        if mapped is not None:
            if mapped.dtype.hasobject:
                raise _object_array(where, name)
            return mapped
    try:
        with np.load(file, allow_pickle=False) as archive:
            return np.asarray(archive[name])
    except ValueError as error:
        if "allow_pickle" in str(error) or "Object arrays" in str(error):
            raise _object_array(where, name) from error
        raise UserInputError(f"{where}: array {name!r} cannot be read ({error})") from error
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise UserInputError(f"{where}: array {name!r} cannot be read ({error})") from error


def _object_array(where: str, name: str) -> UserInputError:
    return UserInputError(
        f"{where}: array {name!r} holds Python objects, which would need unpickling (refused); "
        "save numbers and fixed-width strings only"
    )


def _memmap_stored_npy(file: Path, info: zipfile.ZipInfo) -> np.ndarray | None:
    """Map an uncompressed ``.npy`` member of a zip in place; None when its layout is not mappable."""
    try:
        with file.open("rb") as handle:
            handle.seek(info.header_offset)
            local = handle.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                return None
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            handle.seek(start)
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                return None
            offset = handle.tell()
    except (OSError, ValueError, struct.error):
        return None
    if dtype.hasobject:
        return np.empty(0, dtype=dtype)  # reported by the caller; nothing is unpickled
    if math.prod(shape) == 0 or offset + math.prod(shape) * dtype.itemsize > start + info.compress_size:
        return None
    order: Literal["F", "C"] = "F" if fortran else "C"
    mapped: np.ndarray = np.memmap(str(file), dtype=dtype, mode="c", offset=offset, shape=tuple(shape), order=order)
    return mapped


def _read_store(file: Path, where: str, require_labels: bool) -> SequenceFile:
    """The file through its memory-mapped store: x and ids lazily, lengths and labels in memory."""
    from bigru_lightning.data.store import open_store

    store = open_store(file, where)
    labels = None
    if store.labels is not None:
        names = np.asarray(store.label_names)
        labels = EncodedLabels(codes=store.labels[:].astype(smallest_index_type(len(names))), names=names)
    elif require_labels:
        raise UserInputError(f"{where}: the file has no labels; training needs them ({_label_hint(file)})")
    lengths: np.ndarray | None = store.lengths[:]
    assert lengths is not None
    if int(lengths.min()) == store.x.shape[1]:
        lengths = None
    return SequenceFile(x=store.x, lengths=lengths, labels=labels, ids=store.ids, path=file)


# -- .csv and .parquet (long format, read by pyarrow) -----------------------------------------------
def _read_table(file: Path, where: str) -> SequenceFile:
    from bigru_lightning.data import readers

    layout = readers.read_layout(file, where)
    table = readers.read_long_table(file, where, layout)
    padded = readers.table_to_sequences(table, where, layout, parquet=readers.is_parquet(file))
    del table
    readers.release_table_memory()
    labels = normalise_labels(padded.labels, where) if padded.labels is not None else None
    return SequenceFile(x=padded.x, lengths=padded.lengths, labels=labels, ids=padded.ids, path=file)


# -- .ts (UCR/UEA, through aeon) -------------------------------------------------------------------
def _read_ts(file: Path, where: str) -> SequenceFile:
    try:
        from aeon.datasets import load_from_ts_file
    except ImportError as error:
        raise UserInputError(
            f"{where}: reading .ts files needs aeon: pip install '.[ts]' (or pip install aeon)"
        ) from error
    try:
        loaded: Any = load_from_ts_file(str(file), return_meta_data=True)
    except Exception as error:  # aeon raises IOError, ValueError, IndexError, ... on malformed files
        message = " ".join(str(error).split()) or type(error).__name__
        raise UserInputError(f"{where}: not a readable .ts file ({message})") from error
    data, raw_labels, meta = loaded
    if meta.get("targetlabel"):
        raise UserInputError(f"{where}: has regression targets (@targetLabel); only class labels are accepted")
    cases = [np.asarray(case, dtype=np.float64) for case in data]  # each (channels, steps)
    if not cases:
        raise UserInputError(f"{where}: no cases after @data")
    channels = {case.shape[0] for case in cases}
    if len(channels) != 1 or any(case.ndim != 2 for case in cases):
        raise UserInputError(f"{where}: cases have different numbers of dimensions; every case needs the same")
    lengths = np.array([case.shape[1] for case in cases], dtype=np.int64)
    x = np.zeros((len(cases), int(lengths.max()), channels.pop()), dtype=np.float32)
    for n, case in enumerate(cases):
        x[n, : case.shape[1]] = case.T
    labels = None
    texts = [str(v) for v in np.asarray(raw_labels).reshape(-1)]
    if any(texts):
        if not all(texts):
            raise UserInputError(f"{where}: some cases have a class label and some do not")
        labels = normalise_labels(np.array(texts), where)
    return SequenceFile(x=x, lengths=lengths, labels=labels, ids=None, path=file)
