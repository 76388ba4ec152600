"""Long-format tables (``.csv``, ``.parquet``) read by pyarrow: one row per time step.

Columns: ``sequence_id`` (text or integers), ``label`` (text or integers, optional for
prediction), optional ``time`` (the order of steps within a sequence; without it, the file's
order), every other column a numeric feature. Rows may come in any order and sequences may have
different lengths.

Two ways in, with the same checks and the same one-line :class:`UserInputError` messages:

* :func:`read_long_table` reads the whole table (pyarrow's multi-threaded CSV reader, or
  ``pyarrow.parquet``) and :func:`table_to_sequences` pads it into ``(N, T, F)`` with vectorised
  numpy (no Python loop over rows);
* :func:`iter_long_batches` streams record batches (pyarrow's streaming CSV reader, Parquet row
  groups), so memory stays bounded whatever the file's size (used by :mod:`.store`).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bigru_lightning.errors import UserInputError

CSV_ID, CSV_LABEL, CSV_TIME = "sequence_id", "label", "time"
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
_NUMBER = re.compile(r"^\s*[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|nan|inf|infinity)\s*$", re.IGNORECASE)
_BLOCK = 2 << 20  # bytes per CSV block (streaming and threaded reads); 16 MiB added ~40 MB of peak memory, no speed
_PARQUET_BATCH = 1 << 20  # rows per streamed Parquet batch


@dataclass(frozen=True)
class Layout:
    """The columns of a long-format table.

    Attributes:
        names: Every column, in the file's order.
        label: Whether the table has a ``label`` column.
        time: Whether the table has a ``time`` column.
        features: The feature columns, in the file's order.
    """

    names: list[str]
    label: bool
    time: bool
    features: list[str]

    @property
    def wanted(self) -> list[str]:
        """Columns read: id, label, time (where present), then the features."""
        head = [CSV_ID] + ([CSV_LABEL] if self.label else []) + ([CSV_TIME] if self.time else [])
        return head + self.features


def is_parquet(file: Path) -> bool:
    """Whether ``file`` is read as Parquet (by its suffix)."""
    return file.suffix.lower() in (".parquet", ".pq")


def estimated_rows(file: Path) -> int:
    """The number of rows of a long-format file, cheaply.

    Parquet: its footer; CSV: its size over the mean line length in the first block (header included).
    0 when the file cannot be read: the reader then says why.
    """
    try:
        if is_parquet(file):
            return int(pq.ParquetFile(file).metadata.num_rows)
        size = file.stat().st_size
        with file.open("rb") as handle:
            head = handle.read(_BLOCK)
    except (pa.ArrowException, OSError):
        return 0
    lines = max(head.count(b"\n"), 1)
    return lines if len(head) >= size else int(size * lines / len(head))


# -- the columns -----------------------------------------------------------------------------------
def read_layout(file: Path, where: str) -> Layout:
    """The header of a CSV file or the schema of a Parquet file, checked.

    Raises:
        UserInputError: No ``sequence_id`` column, repeated names, no feature column, not UTF-8,
            not a Parquet file.
    """
    if is_parquet(file):
        try:
            names = list(pq.read_schema(file).names)
        except (pa.ArrowException, OSError) as error:
            raise UserInputError(f"{where}: not a readable Parquet file ({_short(error)})") from error
    else:
        names = _csv_header(file, where)
    if CSV_ID not in names:
        raise UserInputError(
            f"{where}: no '{CSV_ID}' column (columns: {', '.join(names)}); long format needs "
            f"{CSV_ID}, {CSV_LABEL}, optional {CSV_TIME}, then feature columns"
        )
    if len(set(names)) != len(names):
        raise UserInputError(f"{where}: repeated column names in the header ({', '.join(names)})")
    features = [name for name in names if name not in (CSV_ID, CSV_LABEL, CSV_TIME)]
    if not features:
        raise UserInputError(f"{where}: no feature columns (every column besides {CSV_ID}, {CSV_LABEL}, {CSV_TIME})")
    return Layout(names=names, label=CSV_LABEL in names, time=CSV_TIME in names, features=features)


def _csv_header(file: Path, where: str) -> list[str]:
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                if row:
                    return [name.strip() for name in row]
    except UnicodeDecodeError as error:
        raise UserInputError(f"{where}: not UTF-8 text; a .csv file must be text") from error
    except csv.Error as error:
        raise UserInputError(f"{where}: malformed CSV ({error})") from error
    raise UserInputError(f"{where}: the file is empty")


def _csv_options(
    layout: Layout, threads: bool, text_numbers: bool = False
) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]:
    number = pa.string() if text_numbers else pa.float32()
    types = {CSV_ID: pa.string(), CSV_LABEL: pa.string(), CSV_TIME: pa.string() if text_numbers else pa.float64()}
    types.update(dict.fromkeys(layout.features, number))
    read = pacsv.ReadOptions(column_names=layout.names, skip_rows=1, use_threads=threads, block_size=_BLOCK)
    convert = pacsv.ConvertOptions(
        column_types=types,
        include_columns=layout.wanted,
        null_values=[""],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    return read, pacsv.ParseOptions(), convert


# -- whole table -----------------------------------------------------------------------------------
def read_long_table(file: Path, where: str, layout: Layout) -> pa.Table:
    """The whole table, columns ``layout.wanted``, features as float32, checked."""
    if is_parquet(file):
        try:
            table = pq.read_table(file, columns=layout.wanted)
        except (pa.ArrowException, OSError) as error:
            raise UserInputError(f"{where}: not a readable Parquet file ({_short(error)})") from error
    else:
        read, parse, convert = _csv_options(layout, threads=True)
        try:
            table = pacsv.read_csv(file, read_options=read, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as error:
            raise _diagnose_csv(file, where, layout, error) from error
    if table.num_rows == 0:
        raise UserInputError(f"{where}: a header but no data rows")
    return check_batch(table, where, layout, first_row=0, parquet=is_parquet(file))


def check_batch(table: pa.Table, where: str, layout: Layout, first_row: int, parquet: bool) -> pa.Table:
    """Check the rows of ``table`` (starting at row ``first_row`` of the file) and normalise its types.

    Ids and labels become trimmed text (labels of integer type stay integers); features become
    float32 and ``time`` float64. Empty ids, labels or numbers, and text in a numeric column, are
    one-line errors naming the line (CSV) or row (Parquet).
    """
    columns: dict[str, pa.ChunkedArray] = {}
    for name in layout.wanted:
        column = table.column(name)
        if name in (CSV_ID, CSV_LABEL):
            column = _key_column(column, name, where, first_row, parquet)
        else:
            column = _number_column(column, name, where, first_row, parquet)
        columns[name] = column
    return pa.table(columns)


def _row(index: int, first_row: int, parquet: bool) -> str:
    return f"row {first_row + index}" if parquet else f"line {first_row + index + 2}"


def _key_column(column: pa.ChunkedArray, name: str, where: str, first_row: int, parquet: bool) -> pa.ChunkedArray:
    what = "an empty"
    if pa.types.is_integer(column.type):
        if column.null_count:
            raise UserInputError(f"{where}: {_row(_first(column.is_null()), first_row, parquet)} has {what} {name}")
        return column
    if pa.types.is_floating(column.type) and name == CSV_LABEL:
        raise UserInputError(f"{where}: labels are floating-point numbers; class labels must be integers or strings")
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        try:
            column = column.cast(pa.string())
        except pa.ArrowException as error:
            raise UserInputError(f"{where}: column '{name}' of type {column.type} is not accepted") from error
    if pc.any(pc.match_substring_regex(column, r"^\s|\s$")).as_py():  # trim only where needed (a copy)
        column = pc.utf8_trim_whitespace(column)
    empty = pc.or_(column.is_null(), pc.equal(pc.utf8_length(column), 0))
    if pc.any(empty).as_py():
        raise UserInputError(f"{where}: {_row(_first(empty), first_row, parquet)} has {what} {name}")
    return column


def _number_column(column: pa.ChunkedArray, name: str, where: str, first_row: int, parquet: bool) -> pa.ChunkedArray:
    target = pa.float64() if name == CSV_TIME else pa.float32()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        bad = pc.invert(pc.fill_null(pc.match_substring_regex(column, _NUMBER.pattern, ignore_case=True), False))
        if pc.any(bad).as_py():
            i = _first(bad)
            raise _not_a_number(where, _row(i, first_row, parquet), name, column[i].as_py())
        column = pc.cast(pc.utf8_trim_whitespace(column), target)
    elif not (
        pa.types.is_floating(column.type) or pa.types.is_integer(column.type) or pa.types.is_boolean(column.type)
    ):
        raise UserInputError(f"{where}: column '{name}' has type {column.type}; it must hold numbers")
    if column.null_count:
        i = _first(column.is_null())
        raise _not_a_number(where, _row(i, first_row, parquet), name, "")
    return column if column.type == target else pc.cast(column, target)


def _not_a_number(where: str, row: str, name: str, value: object) -> UserInputError:
    extra = "" if name == CSV_TIME else " (every column besides sequence_id, label and time is a numeric feature)"
    return UserInputError(f"{where}: {row}, column '{name}': {value!r} is not a number{extra}")


def _first(mask: pa.ChunkedArray | pa.Array) -> int:
    """Index of the first true value of a boolean array."""
    flags = mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask
    return int(np.argmax(flags.to_numpy(zero_copy_only=False)))


def _diagnose_csv(file: Path, where: str, layout: Layout, error: pa.ArrowInvalid) -> UserInputError:
    """The one-line error for a CSV that pyarrow could not read: re-read it as text to find the row."""
    message = str(error)
    if "UTF8" in message or "utf8" in message.lower():
        return UserInputError(f"{where}: not UTF-8 text; a .csv file must be text")
    rows_before = 0
    for batch in _csv_batches(file, where, layout, text_numbers=True):
        check_batch(batch, where, layout, first_row=rows_before, parquet=False)
        rows_before += batch.num_rows
    return UserInputError(f"{where}: malformed CSV ({_short(error)})")


def _csv_batches(file: Path, where: str, layout: Layout, text_numbers: bool) -> Iterator[pa.Table]:
    read, parse, convert = _csv_options(layout, threads=False, text_numbers=text_numbers)
    ragged: list[tuple[int, int, int | None]] = []

    def refuse(row: pacsv.InvalidRow) -> str:
        ragged.append((row.actual_columns, row.expected_columns, row.number))
        return "error"

    parse = pacsv.ParseOptions(invalid_row_handler=refuse)
    try:
        reader = pacsv.open_csv(file, read_options=read, parse_options=parse, convert_options=convert)
        for batch in reader:
            yield pa.Table.from_batches([batch])
    except pa.ArrowInvalid as error:
        if ragged:
            got, expected, number = ragged[0]
            line = f"line {number}" if number is not None else "a line"
            raise UserInputError(f"{where}: {line} has {got} fields; the header has {expected} (ragged CSV)") from error
        message = str(error)
        if "UTF8" in message or "utf8" in message.lower():
            raise UserInputError(f"{where}: not UTF-8 text; a .csv file must be text") from error
        raise UserInputError(f"{where}: malformed CSV ({_short(error)})") from error


def _short(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]


# -- streaming -------------------------------------------------------------------------------------
def iter_long_batches(file: Path, where: str, layout: Layout, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The table in checked batches (CSV blocks or Parquet row groups), never whole in memory.

    Args:
        file: A ``.csv`` or ``.parquet`` file.
        where: ``"<param> <file>"`` for error messages.
        layout: Its columns (:func:`read_layout`).
        columns: Read only these (default: ``layout.wanted``).
    """
    wanted = columns or layout.wanted
    sub = Layout(layout.names, CSV_LABEL in wanted, CSV_TIME in wanted, [c for c in layout.features if c in wanted])
    rows_before = 0
    if is_parquet(file):
        try:
            parquet = pq.ParquetFile(file)
            # One row group at a time: iterating the whole file keeps buffers of every group read.
            batches: Iterator[pa.Table] = (
                pa.Table.from_batches([batch])
                for group in range(parquet.metadata.num_row_groups)
                for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH, columns=wanted, row_groups=[group])
            )
            for batch in batches:
                yield check_batch(batch, where, sub, first_row=rows_before, parquet=True)
                rows_before += batch.num_rows
        except (pa.ArrowException, OSError) as error:
            raise UserInputError(f"{where}: not a readable Parquet file ({_short(error)})") from error
        return
    read, parse, convert = _csv_options(layout, threads=True)
    convert.include_columns = wanted
    try:
        reader = pacsv.open_csv(file, read_options=read, parse_options=parse, convert_options=convert)
        for batch in reader:
            table = pa.Table.from_batches([batch])
            yield check_batch(table, where, sub, first_row=rows_before, parquet=False)
            rows_before += batch.num_rows
    except pa.ArrowInvalid as error:
        raise _diagnose_csv(file, where, layout, error) from error


def release_table_memory() -> None:
    """Hand the memory of freed Arrow tables back to the system.

    pyarrow's allocator (mimalloc or jemalloc) keeps freed memory for reuse: after a whole-file read
    it held about 140 MB of the 2,000,000-row table's buffers, on top of which training then
    allocated its own (docs/performance.md, "Memory of a file run").
    """
    pa.default_memory_pool().release_unused()


# -- table -> padded arrays ------------------------------------------------------------------------
@dataclass
class Padded:
    """A long table padded into arrays.

    Attributes:
        x: float32 (N, T, F), zeros after each sequence's end.
        lengths: int64 (N,).
        labels: Raw labels per sequence (text or int64), or None.
        ids: Sequence ids as text, in order of first appearance.
    """

    x: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray | None
    ids: list[str]


def table_to_sequences(table: pa.Table, where: str, layout: Layout, parquet: bool) -> Padded:
    """Pad a checked long table into ``(N, T, F)``: sequences in order of first appearance, steps by time.

    Rows already grouped by sequence and ordered by time (the usual export) are copied without a
    sort; any other order is sorted by (sequence, time) first.
    """
    encoded = table.column(CSV_ID).combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy()  # int32, sequences numbered in order of first appearance
    id_values = encoded.dictionary.cast(pa.string()).to_pylist()
    del encoded
    num_rows, num_seq = len(codes), len(id_values)
    lengths = np.bincount(codes, minlength=num_seq).astype(np.int64)
    starts = np.zeros(num_seq, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    labels = None
    if layout.label:
        labels = _sequence_labels(table.column(CSV_LABEL), codes, num_seq, id_values, where, parquet)
    times = table.column(CSV_TIME).to_numpy() if layout.time else None
    same = codes[1:] == codes[:-1]
    ordered = bool((codes[1:] >= codes[:-1]).all())
    if ordered and times is not None:
        ordered = bool((times[1:] > times[:-1])[same].all())
    order: np.ndarray | None = None
    sorted_codes = codes
    if not ordered:
        order = np.lexsort((times, codes)) if times is not None else np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        del same
        same = sorted_codes[1:] == sorted_codes[:-1]
    if times is not None:
        sorted_times = times if order is None else times[order]
        repeated = same & (sorted_times[1:] == sorted_times[:-1])
        if repeated.any():
            seq = id_values[int(sorted_codes[int(np.argmax(repeated))])]
            raise UserInputError(f"{where}: sequence {seq!r} repeats a value of '{CSV_TIME}'")
        del sorted_times, repeated
    del same
    num_steps = int(lengths.max())
    x = np.zeros((num_seq, num_steps, len(layout.features)), dtype=np.float32)
    if order is None and int(lengths.min()) == num_steps:  # grouped, in order, equally long: a reshape
        for f, name in enumerate(layout.features):
            x[:, :, f] = table.column(name).to_numpy().reshape(num_seq, num_steps)
    else:
        flat = sorted_codes.astype(np.int64) * num_steps  # row of x.reshape(N * T, F) of each sorted row
        flat += np.arange(num_rows, dtype=np.int64)
        flat -= starts[sorted_codes]
        rows = x.reshape(num_seq * num_steps, len(layout.features))
        for f, name in enumerate(layout.features):
            values = table.column(name).to_numpy()
            rows[flat, f] = values if order is None else values[order]
    return Padded(x=x, lengths=lengths, labels=labels, ids=id_values)


def _sequence_labels(
    column: pa.ChunkedArray, codes: np.ndarray, num_seq: int, ids: list[str], where: str, parquet: bool
) -> np.ndarray:
    """One label per sequence (the first row's); a sequence with two labels is an error naming the row."""
    encoded = column.combine_chunks().dictionary_encode()
    label_codes = encoded.indices.to_numpy()
    first_row = np.empty(num_seq, dtype=np.int64)
    first_row[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # the last write wins: the first row
    per_sequence = label_codes[first_row]
    differs = label_codes != per_sequence[codes]
    names = encoded.dictionary
    if differs.any():
        row = int(np.argmax(differs))
        seq = int(codes[row])
        previous, label = names[int(per_sequence[seq])].as_py(), names[int(label_codes[row])].as_py()
        raise UserInputError(
            f"{where}: sequence {ids[seq]!r} has two labels ({str(previous)!r}, {str(label)!r} on "
            f"{_row(row, 0, parquet)}); one label per sequence"
        )
    values = names.to_numpy(zero_copy_only=False)
    if pa.types.is_integer(names.type):
        return values.astype(np.int64)[per_sequence]
    return np.asarray(values.astype(str))[per_sequence]
