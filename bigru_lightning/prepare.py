"""``scripts/prepare.py FILE [FILE ...]``: convert long-format ``.csv``/``.parquet`` files into their stores.

Each file becomes ``<file>.bigru-store/`` next to it (see :mod:`bigru_lightning.data.store`), read by
``fit`` (``--data.store true``) and ``predict`` without loading the data whole. Training and
prediction prepare a missing or stale store on first use anyway; this command does it ahead of
time, e.g. once before several runs. A store that is up to date is left alone unless ``--force``.
Mistakes end in one ``error:`` line and exit status 2 (``BIGRU_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bigru_lightning.app import OptionParser, run_command
from bigru_lightning.data.store import open_store, prepare_store


def build_parser() -> OptionParser:
    """The command-line options of ``scripts/prepare.py``."""
    parser = OptionParser(prog="prepare.py", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="Long-format .csv or .parquet files.")
    parser.add_argument("--force", action="store_true", help="Prepare again even if the store is up to date.")
    return parser


def main(args: Sequence[str] | None = None) -> list[Path]:
    """Prepare every file named in ``args`` (default: ``sys.argv[1:]``); returns the store folders."""
    return run_command(lambda: prepare_files(sys.argv[1:] if args is None else list(args)))


def prepare_files(args: list[str]) -> list[Path]:
    """Prepare the files named in ``args`` and print one line per store."""
    options = build_parser().parse_args(args)
    folders = []
    for file in options.files:
        start = time.perf_counter()
        folder = prepare_store(file, where=f"files {file}", force=options.force)
        store = open_store(file, f"files {file}")
        seconds = time.perf_counter() - start
        shape = "x".join(str(d) for d in store.x.shape)
        print(f"{file}: {shape} (sequences x steps x features) in {folder} ({seconds:.1f} s)")
        folders.append(folder)
    return folders
