"""Sequences held in memory under a ``memory://`` name, read like a file by :func:`~.files.read_sequences`.

The Python API (:class:`bigru_lightning.SequenceClassifier`) trains on arrays through the very code
that trains on files: it holds the arrays here under a name, gives that name to the CLI as
``--data.train_file``, and the recipe's facts, the splits, the label mapping and the standardisation
are then those of a file with the same sequences. Nothing is written to disk; a name is valid only
inside :func:`held_in_memory`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from bigru_lightning.data.sequences import SequenceFile
from bigru_lightning.errors import UserInputError

PREFIX = "memory://"
_HELD: dict[str, SequenceFile] = {}


def is_memory_name(path: object) -> bool:
    """Whether ``path`` names sequences held in memory (``memory://...``) rather than a file."""
    return isinstance(path, str) and path.startswith(PREFIX)


@contextlib.contextmanager
def held_in_memory(data: SequenceFile, label: str = "arrays") -> Iterator[str]:
    """Hold ``data`` under a fresh ``memory://<label>-<id>`` name while the block runs; yield the name."""
    name = f"{PREFIX}{label}-{uuid.uuid4().hex[:12]}"
    _HELD[name] = data
    try:
        yield name
    finally:
        del _HELD[name]


def memory_sequences(name: str, where: str) -> SequenceFile:
    """The sequences held under ``name``; a name no longer (or never) held is a user error."""
    try:
        return _HELD[name]
    except KeyError:
        raise UserInputError(f"{where}: no sequences are held in memory under this name") from None
