"""File readers (.npz, .csv, .ts), their validation errors, memory mapping, and FileDataModule."""

from __future__ import annotations

import csv
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import script_env

from bigru_lightning.data import FileDataModule, read_sequences
from bigru_lightning.data.file_datamodule import fit_standardisation
from bigru_lightning.errors import UserInputError


def _write_csv(path: Path, rows: list[list[object]], header: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _long_rows(x: np.ndarray, lengths: np.ndarray, labels: list[str]) -> list[list[object]]:
    rows: list[list[object]] = []
    for n in range(len(x)):
        for t in range(int(lengths[n])):
            rows.append([f"s{n}", labels[n], t, *x[n, t].tolist()])
    return rows


def _npz(path: Path, n: int = 30, t: int = 8, f: int = 2, seed: int = 0, **extra: object) -> Path:
    rng = np.random.default_rng(seed)
    arrays: dict[str, object] = {
        "X": rng.standard_normal((n, t, f)).astype(np.float32),
        "y": np.arange(n) % 3,
    }
    arrays.update(extra)
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


# -- readers -----------------------------------------------------------------------------------------
def test_npz_uncompressed_is_memory_mapped(tmp_path: Path) -> None:
    x = np.random.default_rng(1).standard_normal((5, 4, 3)).astype(np.float32)
    np.savez(tmp_path / "a.npz", X=x, y=np.array(["b", "a", "b", "a", "c"]))
    data = read_sequences(tmp_path / "a.npz", require_labels=True)
    assert isinstance(data.x, np.memmap)  # mapped in place, not copied
    assert data.x.filename is not None and Path(data.x.filename).name == "a.npz"
    np.testing.assert_array_equal(np.asarray(data.x), x)
    assert data.labels is not None and list(data.labels) == ["b", "a", "b", "a", "c"]
    assert data.lengths is None and data.ids is None


def test_npz_compressed_falls_back_to_a_normal_read(tmp_path: Path) -> None:
    x = np.random.default_rng(2).standard_normal((4, 6)).astype(np.float64)  # (N, T), float64
    np.savez_compressed(tmp_path / "c.npz", X=x, y=np.array([3, 1, 3, 1]), lengths=np.array([6, 2, 5, 1]))
    data = read_sequences(tmp_path / "c.npz", require_labels=True)
    assert not isinstance(data.x, np.memmap)
    assert data.x.shape == (4, 6, 1) and data.x.dtype == np.float32
    np.testing.assert_allclose(data.x[..., 0], x, rtol=1e-6)
    assert data.lengths is not None and data.lengths.tolist() == [6, 2, 5, 1]
    assert data.labels is not None and data.labels.dtype == np.int64


def test_csv_long_format_orders_by_time_and_pads(tmp_path: Path) -> None:
    rows = [
        ["b", "dog", 1, 20.0, 0.5],
        ["a", "cat", 2, 3.0, -1.0],
        ["a", "cat", 0, 1.0, 1.0],
        ["b", "dog", 0, 10.0, 0.0],
        ["a", "cat", 1, 2.0, 0.0],
    ]
    path = _write_csv(tmp_path / "d.csv", rows, ["sequence_id", "label", "time", "f1", "f2"])
    data = read_sequences(path, require_labels=True)
    assert data.ids == ["b", "a"]  # first appearance order
    assert data.x.shape == (2, 3, 2)
    assert data.lengths is not None and data.lengths.tolist() == [2, 3]
    np.testing.assert_array_equal(data.x[1, :, 0], [1.0, 2.0, 3.0])  # sorted by time
    np.testing.assert_array_equal(data.x[0], [[10.0, 0.0], [20.0, 0.5], [0.0, 0.0]])  # zero padding
    assert data.labels is not None and list(data.labels) == ["dog", "cat"]


def test_csv_without_labels_reads_for_prediction(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "u.csv", [["a", 1.0], ["a", 2.0], ["b", 3.0], ["b", 4.0]], ["sequence_id", "x"])
    data = read_sequences(path, require_labels=False)
    assert data.labels is None and data.lengths is None  # equal lengths: no lengths needed
    np.testing.assert_array_equal(data.x[:, :, 0], [[1.0, 2.0], [3.0, 4.0]])


def test_ts_unequal_lengths_through_aeon(tmp_path: Path) -> None:
    aeon_datasets = pytest.importorskip("aeon.datasets", reason="aeon not installed (pip install '.[ts]')")
    rng = np.random.default_rng(3)
    cases = [rng.standard_normal((2, length)).round(3) for length in (5, 3, 4)]
    aeon_datasets.save_to_ts_file(
        X=cases, y=np.array(["up", "down", "up"]), label_type="classification", path=str(tmp_path), problem_name="w"
    )
    data = read_sequences(tmp_path / "w.ts", require_labels=True)
    assert data.x.shape == (3, 5, 2)
    assert data.lengths is not None and data.lengths.tolist() == [5, 3, 4]
    np.testing.assert_allclose(data.x[1, :3], cases[1].T, atol=1e-6)
    assert not data.x[1, 3:].any()
    assert data.labels is not None and list(data.labels) == ["up", "down", "up"]


# -- validation errors ---------------------------------------------------------------------------------
def _object_npz(folder: Path) -> Path:
    path = folder / "obj.npz"
    np.savez(path, X=np.zeros((2, 3), dtype=np.float32), y=np.array([{"a": 1}, None], dtype=object))
    return path


def _compressed_object_npz(folder: Path) -> Path:
    path = folder / "objc.npz"
    np.savez_compressed(path, X=np.array([[1.0], "x"], dtype=object), y=np.array([0, 1]))
    return path


BAD_FILES = {
    "missing": (lambda p: p / "nope.npz", "no such file"),
    "unknown_suffix": (lambda p: _touch(p / "d.txt", b"1,2"), "unknown file format '.txt'; accepted: .npz"),
    "empty": (lambda p: _touch(p / "e.npz", b""), "the file is empty"),
    "not_a_zip": (lambda p: _touch(p / "z.npz", b"not a zip at all"), "not a valid .npz archive"),
    "no_X": (lambda p: _savez(p / "n.npz", x=np.zeros((2, 3)), y=[0, 1]), "no array 'X' (arrays found: x, y)"),
    "rank": (lambda p: _savez(p / "r.npz", X=np.zeros((2, 3, 4, 5)), y=[0, 1]), "rank 4); accepted: (N, T, F)"),
    "nan": (lambda p: _savez(p / "nan.npz", X=np.array([[1.0, 2.0], [np.nan, 1.0]]), y=[0, 1]), "NaN or Inf"),
    "inf": (lambda p: _savez(p / "inf.npz", X=np.array([[1.0, np.inf]]), y=[0]), "first in sequence 0"),
    "no_labels": (lambda p: _savez(p / "nl.npz", X=np.zeros((2, 3))), "has no labels; training needs them"),
    "length_zero": (
        lambda p: _savez(p / "l0.npz", X=np.zeros((2, 3)), y=[0, 1], lengths=[3, 0]),
        "lengths[1] = 0 is out of range; each length must lie in [1, 3]",
    ),
    "length_too_long": (
        lambda p: _savez(p / "l9.npz", X=np.zeros((2, 3)), y=[0, 1], lengths=[9, 1]),
        "lengths[0] = 9 is out of range",
    ),
    "object_array": (_object_npz, "holds Python objects, which would need unpickling (refused)"),
    "object_array_compressed": (_compressed_object_npz, "'X' holds Python objects"),
    "y_count": (lambda p: _savez(p / "yc.npz", X=np.zeros((3, 2)), y=[0, 1]), "y has shape (2,); need (3,)"),
    "lengths_count": (
        lambda p: _savez(p / "lc.npz", X=np.zeros((3, 2)), y=[0, 1, 0], lengths=[1, 2]),
        "lengths must be integers of shape (3,)",
    ),
    "float_labels": (lambda p: _savez(p / "fl.npz", X=np.zeros((2, 2)), y=[0.5, 1.5]), "floating-point"),
    "string_X": (lambda p: _savez(p / "sx.npz", X=np.array([["a", "b"]]), y=[0]), "X has dtype <U1"),
    "ragged_csv": (
        lambda p: _touch(p / "rg.csv", b"sequence_id,label,x\na,0,1.0\na,0\n"),
        "line 3 has 2 fields; the header has 3 (ragged CSV)",
    ),
    "non_numeric_csv": (
        lambda p: _touch(p / "nn.csv", b"sequence_id,label,x\na,0,1.0\na,0,abc\n"),
        "line 3, column 'x': 'abc' is not a number",
    ),
    "csv_no_id": (lambda p: _touch(p / "ni.csv", b"id,label,x\na,0,1\n"), "no 'sequence_id' column"),
    "csv_no_features": (lambda p: _touch(p / "nf.csv", b"sequence_id,label\na,0\n"), "no feature columns"),
    "csv_header_only": (lambda p: _touch(p / "ho.csv", b"sequence_id,label,x\n"), "a header but no data rows"),
    "csv_no_label": (lambda p: _touch(p / "nl.csv", b"sequence_id,x\na,1\n"), "has no labels"),
    "csv_two_labels": (
        lambda p: _touch(p / "tl.csv", b"sequence_id,label,x\na,0,1\na,1,2\n"),
        "sequence 'a' has two labels",
    ),
    "csv_nan": (lambda p: _touch(p / "cn.csv", b"sequence_id,label,x\na,0,nan\n"), "NaN or Inf"),
    "csv_duplicate_time": (
        lambda p: _touch(p / "dt.csv", b"sequence_id,label,time,x\na,0,1,1\na,0,1,2\n"),
        "repeats a value of 'time'",
    ),
    "ts_malformed": (lambda p: _touch(p / "bad.ts", b"@problemName x\n@data\n1,2,3:oops:zz\n"), ".ts"),
}


def _touch(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _savez(path: Path, **arrays: object) -> Path:
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_gives_one_line_error_naming_file_and_parameter(tmp_path: Path, case: str) -> None:
    make, expected = BAD_FILES[case]
    if case == "ts_malformed":
        pytest.importorskip("aeon.datasets", reason="aeon not installed (pip install '.[ts]')")
    path = make(tmp_path)
    with pytest.raises(UserInputError) as caught:
        read_sequences(path, require_labels=True, param="data.train_file")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"data.train_file {path}"), message
    assert expected in message, message


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _npz(tmp_path / "locked.npz")
    real_open = Path.open

    def deny(self: Path, *args: object, **kwargs: object) -> object:
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", deny)  # root reads any file, so denial is simulated
    with pytest.raises(UserInputError, match=r"data.train_file .*locked.npz: cannot be read \(Permission denied\)"):
        read_sequences(path, require_labels=True)


def test_zip_member_layout_is_really_mapped_at_the_right_offset(tmp_path: Path) -> None:
    # A zip with a comment and an extra field in the local header: the offset must come from the local header.
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    buffer = tmp_path / "x.npy"
    np.save(buffer, x)
    with zipfile.ZipFile(tmp_path / "e.npz", "w", compression=zipfile.ZIP_STORED) as archive:
        info = zipfile.ZipInfo("X.npy")
        info.extra = b"\xfe\xca\x04\x00abcd"  # an unknown extra block of 4 bytes
        archive.writestr(info, buffer.read_bytes())
        archive.writestr("y.npy", _npy_bytes(tmp_path, np.array([0, 1])))
        archive.comment = b"made by hand"
    data = read_sequences(tmp_path / "e.npz", require_labels=True)
    assert isinstance(data.x, np.memmap)
    np.testing.assert_array_equal(np.asarray(data.x), x)


def _npy_bytes(tmp_path: Path, array: np.ndarray) -> bytes:
    path = tmp_path / "tmp.npy"
    np.save(path, array)
    return path.read_bytes()


# -- FileDataModule ----------------------------------------------------------------------------------
def test_datamodule_splits_are_stratified_disjoint_and_complete(tmp_path: Path) -> None:
    y = np.array(["a"] * 40 + ["b"] * 20 + ["c"] * 40)
    x = np.random.default_rng(0).standard_normal((100, 5, 3)).astype(np.float32)
    x[:, 0, 0] = np.arange(100)  # tag each sequence
    np.savez(tmp_path / "s.npz", X=x, y=y)
    dm = FileDataModule(str(tmp_path / "s.npz"), val_fraction=0.2, test_fraction=0.1, seed=7)
    assert (dm.num_features, dm.num_classes, dm.label_names) == (3, 3, ["a", "b", "c"])  # known before setup
    dm.setup("fit")
    assert dm.train_split is not None and dm.val_split is not None and dm.test_split is not None
    sizes = (len(dm.train_split), len(dm.val_split), len(dm.test_split))
    assert sizes == (70, 20, 10)
    tags = [set(s.x[:, 0, 0].long().tolist()) for s in (dm.train_split, dm.val_split, dm.test_split)]
    assert set.union(*tags) == set(range(100)) and sum(map(len, tags)) == 100  # disjoint and complete
    assert torch.bincount(dm.val_split.y).tolist() == [8, 4, 8]  # the 2:1:2 proportions
    assert torch.bincount(dm.test_split.y).tolist() == [4, 2, 4]
    again = FileDataModule(str(tmp_path / "s.npz"), val_fraction=0.2, test_fraction=0.1, seed=7)
    again.setup("fit")
    assert again.val_split is not None and torch.equal(again.val_split.x, dm.val_split.x)  # same seed, same split


def test_standardisation_is_fitted_on_train_only_and_ignores_padding(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    train_x = (rng.standard_normal((30, 6, 2)) * [2.0, 0.5] + [10.0, -3.0]).astype(np.float32)
    lengths = rng.integers(1, 7, 30)
    for n, length in enumerate(lengths):
        train_x[n, length:] = 0.0  # padding would pull the mean towards 0 if it counted
    np.savez(tmp_path / "train.npz", X=train_x, y=np.arange(30) % 2, lengths=lengths)
    far = np.full((10, 6, 2), 1000.0, dtype=np.float32)  # val/test far away: must not count
    np.savez(tmp_path / "val.npz", X=far, y=np.arange(10) % 2)
    np.savez(tmp_path / "test.npz", X=far, y=np.arange(10) % 2)
    dm = FileDataModule(str(tmp_path / "train.npz"), str(tmp_path / "val.npz"), str(tmp_path / "test.npz"))
    dm.setup("fit")
    valid = np.concatenate([train_x[n, :length] for n, length in enumerate(lengths)])
    assert dm.feature_mean is not None and dm.feature_std is not None
    np.testing.assert_allclose(dm.feature_mean.numpy(), valid.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(dm.feature_std.numpy(), valid.std(axis=0), rtol=1e-4)
    # The data stays raw (the model standardises), and every split carries lengths.
    assert dm.val_split is not None and dm.val_split.lengths is not None
    assert float(dm.val_split.x.max()) == 1000.0
    assert dm.val_split.lengths.tolist() == [6] * 10
    off = FileDataModule(str(tmp_path / "train.npz"), standardize=False)
    off.setup("fit")
    assert off.feature_mean is None


def test_constant_feature_gets_unit_std() -> None:
    mean, std = fit_standardisation(torch.ones(4, 3, 1) * 5.0, None)
    assert mean.tolist() == [5.0] and std.tolist() == [1.0]


def test_string_labels_sorted_mapping_and_variable_length_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    labels = ["zebra", "ant", "moth"] * 10
    lengths = rng.integers(2, 9, 30)
    x = rng.standard_normal((30, 8, 2))
    path = _write_csv(tmp_path / "v.csv", _long_rows(x, lengths, labels), ["sequence_id", "label", "time", "a", "b"])
    dm = FileDataModule(str(path), val_fraction=0.2, test_fraction=0.2, batch_size=4)
    assert dm.label_names == ["ant", "moth", "zebra"]
    names = [dm.label_names[k] for k in dm.train_targets]
    assert names == labels  # the mapping round-trips to the original labels
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert len(batch) == 3  # (x, y, lengths)
    x_b, y_b, len_b = batch
    assert x_b.shape == (4, 8, 2) and y_b.dtype == torch.int64 and len_b.dtype == torch.int64
    assert bool((len_b >= 2).all()) and bool((len_b <= 8).all())


def test_integer_labels_sort_numerically(tmp_path: Path) -> None:
    np.savez(tmp_path / "i.npz", X=np.zeros((12, 2), dtype=np.float32), y=np.array([10, 2, 1] * 4))
    dm = FileDataModule(str(tmp_path / "i.npz"), val_fraction=0.25, test_fraction=0.25)
    assert dm.label_names == ["1", "2", "10"]


DATAMODULE_ERRORS = {
    "feature_mismatch": (
        lambda p: {"train_file": str(_npz(p / "a.npz", f=2)), "val_file": str(_npz(p / "b.npz", f=3))},
        "data.val_file {p}/b.npz has 3 features per step; data.train_file {p}/a.npz has 2",
    ),
    "unknown_val_label": (
        lambda p: {
            "train_file": str(_npz(p / "a.npz")),
            "test_file": str(_savez(p / "t.npz", X=np.zeros((2, 8, 2)), y=[0, 7])),
        },
        "data.test_file {p}/t.npz: labels 7 do not occur in data.train_file",
    ),
    "one_class": (
        lambda p: {"train_file": str(_savez(p / "o.npz", X=np.zeros((4, 2)), y=[1, 1, 1, 1]))},
        "only one class (1); need at least two",
    ),
    "too_few_to_split": (
        lambda p: {"train_file": str(_savez(p / "f.npz", X=np.zeros((4, 2)), y=[0, 1, 0, 1]))},
        "too few to split off data.",
    ),
    "fractions_sum": (
        lambda p: {"train_file": str(_npz(p / "a.npz")), "val_fraction": 0.6, "test_fraction": 0.5},
        "data.val_fraction + data.test_fraction must be < 1",
    ),
    "fraction_range": (
        lambda p: {"train_file": str(_npz(p / "a.npz")), "val_fraction": -0.1},
        "data.val_fraction must be a number in [0, 1)",
    ),
    "val_file_missing": (
        lambda p: {"train_file": str(_npz(p / "a.npz")), "val_file": str(p / "gone.csv")},
        "data.val_file {p}/gone.csv: no such file",
    ),
}


@pytest.mark.parametrize("case", sorted(DATAMODULE_ERRORS))
def test_datamodule_errors(tmp_path: Path, case: str) -> None:
    make, expected = DATAMODULE_ERRORS[case]
    with pytest.raises(UserInputError) as caught:
        FileDataModule(**make(tmp_path))  # type: ignore[arg-type]
    assert expected.format(p=tmp_path) in str(caught.value)
    assert "\n" not in str(caught.value)


# -- .csv and .parquet read by pyarrow: the same results and the same errors -----------------------------
def _long_table(path: Path, rows: list[list[object]], header: list[str]) -> Path:
    """Write ``rows`` as CSV or Parquet, by ``path``'s suffix."""
    if path.suffix == ".csv":
        return _write_csv(path, rows, header)
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    pq.write_table(pa.table(columns), path, row_group_size=3)  # several row groups
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_long_format_any_row_order_variable_lengths(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(6)
    lengths = np.array([4, 1, 3, 2, 4])
    x = rng.standard_normal((5, 4, 2)).astype(np.float32)
    labels = ["up", "down", "up", "flat", "down"]
    rows = _long_rows(x, lengths, labels)
    shuffled = [rows[i] for i in rng.permutation(len(rows))]  # rows in any order: time restores the steps
    path = _long_table(tmp_path / f"t{suffix}", shuffled, ["sequence_id", "label", "time", "a", "b"])
    data = read_sequences(path, require_labels=True)
    assert data.ids is not None
    order = [int(i[1:]) for i in data.ids]  # ids as text, in order of first appearance
    assert sorted(order) == list(range(5))
    assert data.lengths is not None and data.lengths.tolist() == lengths[order].tolist()
    for k, n in enumerate(order):
        np.testing.assert_array_equal(data.x[k, : lengths[n]], x[n, : lengths[n]])
        assert not data.x[k, lengths[n] :].any()  # zero padding
    assert data.labels is not None and list(data.labels) == [labels[n] for n in order]


def test_parquet_integer_ids_and_labels(tmp_path: Path) -> None:
    rows = [[7, 2, 0.5], [7, 2, 1.5], [3, 10, 2.5], [3, 10, 3.5]]
    path = _long_table(tmp_path / "i.parquet", rows, ["sequence_id", "label", "x"])
    data = read_sequences(path, require_labels=True)
    assert data.ids == ["7", "3"]
    assert data.labels is not None and data.labels.dtype == np.int64 and data.labels.tolist() == [2, 10]
    np.testing.assert_array_equal(data.x[:, :, 0], [[0.5, 1.5], [2.5, 3.5]])


def test_csv_and_parquet_read_the_same(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    lengths = rng.integers(1, 7, 40)
    x = rng.standard_normal((40, 6, 3)).round(4)
    rows = _long_rows(x, lengths, [str(v) for v in rng.integers(0, 3, 40)])
    header = ["sequence_id", "label", "time", "f1", "f2", "f3"]
    a = read_sequences(_long_table(tmp_path / "a.csv", rows, header), require_labels=True)
    b = read_sequences(_long_table(tmp_path / "a.parquet", rows, header), require_labels=True)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.ids == b.ids and a.labels is not None and b.labels is not None
    assert a.labels.tolist() == b.labels.tolist() and a.labels.dtype == np.int64  # "0", "1" are integers


PARQUET_ERRORS = {
    "no_id": ([["a", 0, 1.0]], ["id", "label", "x"], "no 'sequence_id' column"),
    "no_features": ([["a", 0]], ["sequence_id", "label"], "no feature columns"),
    "no_label": ([["a", 1.0]], ["sequence_id", "x"], "has no labels"),
    "text_feature": ([["a", 0, "1.0"], ["a", 0, "abc"]], ["sequence_id", "label", "x"], "row 1, column 'x': 'abc'"),
    "null_feature": ([["a", 0, 1.0], ["a", 0, None]], ["sequence_id", "label", "x"], "row 1, column 'x'"),
    "nan": ([["a", 0, 1.0], ["a", 0, float("nan")]], ["sequence_id", "label", "x"], "NaN or Inf"),
    "inf": ([["a", 0, float("inf")]], ["sequence_id", "label", "x"], "NaN or Inf"),
    "two_labels": ([["a", 0, 1.0], ["a", 1, 2.0]], ["sequence_id", "label", "x"], "sequence 'a' has two labels"),
    "float_labels": ([["a", 0.5, 1.0]], ["sequence_id", "label", "x"], "floating-point"),
    "empty_id": ([["", 0, 1.0]], ["sequence_id", "label", "x"], "row 0 has an empty sequence_id"),
    "duplicate_time": (
        [["a", 0, 1, 1.0], ["a", 0, 1, 2.0]],
        ["sequence_id", "label", "time", "x"],
        "repeats a value of 'time'",
    ),
}


@pytest.mark.parametrize("case", sorted(PARQUET_ERRORS))
def test_bad_parquet_gives_one_line_error(tmp_path: Path, case: str) -> None:
    rows, header, expected = PARQUET_ERRORS[case]
    path = _long_table(tmp_path / "bad.parquet", rows, header)
    with pytest.raises(UserInputError) as caught:
        read_sequences(path, require_labels=True, param="data.train_file")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"data.train_file {path}"), message
    assert expected in message, message


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = _touch(tmp_path / "x.parquet", b"PAR1 but not really")
    with pytest.raises(UserInputError, match=r"x.parquet: not a readable Parquet file"):
        read_sequences(path, require_labels=True)


def test_csv_errors_in_a_later_block_name_the_right_line(tmp_path: Path) -> None:
    lines = ["sequence_id,label,x"] + [f"s{i // 10},0,{i}.5" for i in range(300_000)]
    lines[250_001] = "s25000,0,oops"  # file line 250002
    path = _touch(tmp_path / "big.csv", ("\n".join(lines) + "\n").encode())
    with pytest.raises(UserInputError, match=r"line 250002, column 'x': 'oops' is not a number"):
        read_sequences(path, require_labels=True)


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = _touch(tmp_path / "b.csv", b"sequence_id,label,x\n\xff\xfe,0,1\n")
    with pytest.raises(UserInputError, match="not UTF-8 text"):
        read_sequences(path, require_labels=True)


_READ_MEMORY_PROBE = """
import sys
from pathlib import Path
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from bigru_lightning.data import read_sequences

def rss_mb():
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20

n, steps = 8000, 50
ids = np.repeat(np.arange(n), steps)
x = np.random.default_rng(0).standard_normal((n * steps, 3)).astype(np.float32)
columns = {"sequence_id": ids, "label": ids % 3, "time": np.tile(np.arange(steps), n)}
columns.update({f"f{k}": x[:, k] for k in range(3)})
pacsv.write_csv(pa.table(columns), sys.argv[1])
del ids, x, columns
pa.default_memory_pool().release_unused()
before = rss_mb()
data = read_sequences(sys.argv[1], True, store=False)
print(rss_mb() - before)
"""


def test_whole_file_read_keeps_about_its_arrays_not_the_tables_buffers(tmp_path: Path) -> None:
    """After reading a 400,000-row CSV (arrays of 5 MB) the process holds tens of MB more, not the table's.

    pyarrow's allocator keeps freed buffers for reuse unless told to hand them back; they were ~50 MB
    here (~140 MB at 2,000,000 rows) under everything a run allocates afterwards.
    """
    done = subprocess.run(
        [sys.executable, "-c", _READ_MEMORY_PROBE, str(tmp_path / "long.csv")],
        capture_output=True,
        text=True,
        env=script_env(),
        check=True,
    )
    held_mb = float(done.stdout.strip().splitlines()[-1])
    assert held_mb < 45, f"the read left {held_mb:.0f} MiB more resident"
