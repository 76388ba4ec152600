"""A scikit-learn user's ``X`` and ``y`` checked and stacked as the file readers stack a file.

``X`` is a 3-D array (sequences, steps, features), a 2-D array (sequences, steps: one feature), or a
list of arrays of shape (steps, features) or (steps,), whose lengths may differ. The result is a
:class:`~bigru_lightning.data.files.SequenceFile`: float32 (N, T, F), padded with zeros at the end,
with ``lengths`` where they differ, exactly what a reader returns for a file of the same sequences.
Labels are mapped to class indices in the order the CLI gives a file's labels (sorted; text that
spells integers, as in UCR/UEA files, numerically). Every mistake is a ``ValueError`` of one line,
raised before any training starts.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.utils import check_array, column_or_1d
from sklearn.utils.multiclass import check_classification_targets

from bigru_lightning.data.labels import EncodedLabels, label_classes, normalise_labels, smallest_index_type
from bigru_lightning.data.sequences import SequenceFile

SHAPES = "a 3-D array (sequences, steps, features), a 2-D array (sequences, steps) or a list of 2-D arrays"


def as_sequences(X: Any, name: str = "X") -> SequenceFile:
    """``X`` stacked as (N, T, F) float32 with lengths; a ``ValueError`` names what is wrong."""
    if isinstance(X, (list, tuple)):
        x, lengths = _stack_list(list(X), name)
    else:
        x, lengths = _from_array(X, name), None
    if not np.isfinite(x).all():
        bad = int(np.argwhere(~np.isfinite(x))[0][0])
        raise ValueError(f"{name} contains NaN or inf (first in sequence {bad}); only finite numbers are accepted")
    if lengths is not None and bool((lengths == x.shape[1]).all()):
        lengths = None
    return SequenceFile(x=x, lengths=lengths, labels=None, ids=None, path=Path(name))


def _from_array(X: Any, name: str) -> np.ndarray:
    if sparse.issparse(X):
        check_array(X, accept_sparse=False, input_name=name)  # raises scikit-learn's TypeError
    array = np.asarray(X)
    if array.dtype == object and any(np.ndim(item) > 0 for item in array.reshape(-1)[:1000]):
        raise ValueError(
            f"{name} is an array of arrays (ragged sequences); pass sequences of different lengths as a list of "
            "2-D arrays (steps, features)"
        )
    if array.ndim == 1:
        raise ValueError(
            f"{name} has 1 dimension (shape {array.shape}); expected {SHAPES}. Reshape your data: "
            f"{name}.reshape(1, -1) for one sequence, {name}.reshape(-1, 1) for sequences of one step"
        )
    if array.ndim not in (2, 3):
        raise ValueError(f"{name} has {array.ndim} dimensions (shape {array.shape}); expected {SHAPES}")
    checked = check_array(
        array, allow_nd=True, dtype=np.float32, ensure_all_finite=False, ensure_min_samples=1, input_name=name
    )
    x = checked[:, :, None] if checked.ndim == 2 else checked
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{name} has shape {x.shape}; need at least one step of one feature")
    if checked.ndim == 3 and x.shape[1] < x.shape[2]:
        warnings.warn(
            f"{name} has shape {x.shape}: {x.shape[1]} steps of {x.shape[2]} features each. If it is aeon's or "
            f"sktime's layout (cases, channels, steps), pass {name}.transpose(0, 2, 1)",
            UserWarning,
            stacklevel=3,
        )
    return np.ascontiguousarray(x)


def _stack_list(items: list[Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    if not items:
        raise ValueError(f"{name} has no sequences; expected {SHAPES}")
    if all(np.ndim(item) == 0 for item in items):
        raise ValueError(f"{name} is 1-D (one number per sequence); expected {SHAPES}")
    sequences: list[np.ndarray] = []
    for index, item in enumerate(items):
        where = f"{name}[{index}]"
        if sparse.issparse(item):
            check_array(item, accept_sparse=False, input_name=where)
        if np.ndim(item) not in (1, 2):
            raise ValueError(f"{where} has {np.ndim(item)} dimension(s); a sequence is (steps, features) or (steps,)")
        sequence = check_array(item, ensure_2d=False, dtype=np.float32, ensure_all_finite=False, input_name=where)
        sequence = sequence[:, None] if sequence.ndim == 1 else sequence
        if sequence.shape[0] == 0 or sequence.shape[1] == 0:
            raise ValueError(f"{where} has shape {sequence.shape}; need at least one step of one feature")
        if sequences and sequence.shape[1] != sequences[0].shape[1]:
            raise ValueError(
                f"{where} has {sequence.shape[1]} features per step, {name}[0] has {sequences[0].shape[1]}; "
                "every sequence needs the same features"
            )
        sequences.append(sequence)
    lengths = np.array([s.shape[0] for s in sequences], dtype=np.int64)
    x = np.zeros((len(sequences), int(lengths.max()), sequences[0].shape[1]), dtype=np.float32)
    for index, sequence in enumerate(sequences):
        x[index, : len(sequence)] = sequence
    return x, lengths


def encode_labels(y: Any, num_sequences: int, name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """The classes of ``y`` in the CLI's order and each label's class index (int64).

    Raises:
        ValueError: ``y`` is missing, not class labels, of another length than ``X``, or of one class.
    """
    if y is None:
        raise ValueError("SequenceClassifier requires y to be passed, but the target y is None")
    labels = column_or_1d(y, warn=True)
    if len(labels) != num_sequences:
        raise ValueError(f"{name} has {len(labels)} labels for {num_sequences} sequences; need one label per sequence")
    check_classification_targets(labels)
    classes, inverse = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"{name} has one class only ({classes[0]!r}); need at least two classes")
    order = np.arange(len(classes))
    if all(isinstance(c, str) for c in classes):  # the readers' rule: text that spells integers sorts numerically
        order = np.argsort(label_classes(normalise_labels(classes.astype(str), name)).codes, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return classes[order], rank[inverse.reshape(-1)].astype(np.int64)


def class_indices(y: Any, classes: np.ndarray, num_sequences: int, name: str) -> np.ndarray:
    """Class indices of labels ``y`` (of data other than the training data) into ``classes``."""
    labels = column_or_1d(y, warn=True)
    if len(labels) != num_sequences:
        raise ValueError(f"{name} has {len(labels)} labels for {num_sequences} sequences; need one label per sequence")
    index = {label: k for k, label in enumerate(classes.tolist())}
    unknown = sorted({str(label) for label in labels.tolist() if label not in index})
    if unknown:
        raise ValueError(f"{name} has labels the training data lacks: {', '.join(unknown[:5])}")
    return np.array([index[label] for label in labels.tolist()], dtype=np.int64)


def as_file_labels(codes: np.ndarray, classes: np.ndarray) -> EncodedLabels:
    """Class indices as a file's labels, in this class order, named ``str(label)``.

    The data module keeps the order, and the names are what the checkpoint saves, ``scripts/predict.py``
    writes and the test figures show.
    """
    return EncodedLabels(
        codes=codes.astype(smallest_index_type(len(classes))), names=np.array([str(c) for c in classes.tolist()])
    )


def classes_of_label_names(names: list[str]) -> np.ndarray:
    """The classes of a checkpoint's label names (as ``scripts/fit.py`` saves them): integers where all spell one."""
    return np.asarray(normalise_labels(np.asarray(names, dtype=str), "label_names"))
