"""What every command shares: option parsing, the error boundary, safe checkpoint loading, atomic output files.

- :class:`OptionParser`: argparse for the commands that are not LightningCLI (predict, export, plot);
  a usage mistake raises :class:`~bigru_lightning.errors.UserInputError` instead of printing usage.
- :func:`run_command`: the user's mistakes end in one ``error:`` line and exit status 2 (set
  ``BIGRU_DEBUG=1`` for the traceback); other failures keep their traceback.
- :func:`load_checkpoint` / :func:`load_classifier`: ``torch.load(weights_only=True)`` (a file carrying
  pickled Python objects is refused before anything in it runs), each way a file can be wrong
  explained in one line naming the option.
- :func:`check_output` / :func:`atomic_output`: an output file is written to a temporary file beside
  it and renamed into place, so a crash never leaves a torn file, and an existing file is replaced only
  when asked.
- :func:`imports_without_collection`: a command's process imports torch and Lightning with the garbage
  collector paused, then freezes what they made (0.3-0.6 s less start-up).
- :func:`skip_final_collection`: a finished command's process exits without the interpreter's last
  garbage collections (about 1 s with torch, Lightning and scikit-learn loaded).

torch and Lightning are imported only inside the functions that need them, so a bad option fails fast.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import os
import pickle
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from bigru_lightning.errors import UserInputError, find_user_error, one_line

if TYPE_CHECKING:
    from bigru_lightning.module import BiGRUClassifier

DEBUG_ENV = "BIGRU_DEBUG"
T = TypeVar("T")
FROM_FIT = "give a .ckpt written by scripts/fit.py"


# -- options -----------------------------------------------------------------------------------------------------


class OptionParser(argparse.ArgumentParser):
    """argparse whose usage mistakes raise :class:`UserInputError` (one ``error:`` line, exit 2) instead of usage."""

    def error(self, message: str) -> NoReturn:
        """Raise the parse error as a user error."""
        raise UserInputError(message)


# -- the error boundary ------------------------------------------------------------------------------------------


def debug_enabled() -> bool:
    """True when ``BIGRU_DEBUG`` is set (and not 0): errors keep their traceback."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run_command(body: Callable[[], T], exit_codes: Mapping[type[BaseException], int] | None = None) -> T:
    """Run a command's ``body``; the user's mistakes become one ``error:`` line on stderr and exit status 2.

    Args:
        body: The command's work; its result is returned.
        exit_codes: Further exception types shown the same way, with their exit status (e.g. a failed
            export check: 1). Any other exception propagates with its traceback, as does every
            exception when ``BIGRU_DEBUG=1``.
    """
    try:
        return body()
    except Exception as error:
        if debug_enabled():
            raise
        user_error = find_user_error(error)
        if user_error is not None:
            _exit_with(one_line(user_error), 2)
        for kind, code in (exit_codes or {}).items():
            if isinstance(error, kind):
                _exit_with(one_line(error), code)
        raise


@contextlib.contextmanager
def imports_without_collection() -> Iterator[None]:
    """Run a command's imports with the garbage collector paused, then freeze the objects they made.

    Importing torch, Lightning and torchmetrics creates several hundred thousand objects, and the
    collector walks all of them again and again as they accumulate: about 0.7 s of a 12 s file run
    went to collections, nearly all during imports, which found a few hundred cyclic objects
    (``docs/performance.md``). Inside this block nothing is collected; at its end ``gc.freeze()``
    moves the modules' objects, which live as long as the process, out of the collector's reach, so
    later collections walk only what the run itself creates. The collector is left as it was found
    (enabled, unless it was disabled before). Only ``scripts/*.py`` use this, around their imports.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def skip_final_collection() -> None:
    """Let the process of a finished command exit without the interpreter's final garbage collections.

    At exit, CPython collects every object still alive; with torch, Lightning and scikit-learn loaded
    that took about 1.0 s of a 6 s tutorial run (``docs/performance.md``). ``gc.freeze()`` moves those
    objects out of the collector's reach, so the exit takes about 0.2 s. ``atexit`` handlers still
    run, and every file a command writes is closed before its ``main`` returns. Only ``scripts/*.py``
    call this, after ``main`` returned: a process that goes on (a notebook, a test) must not, as
    frozen objects are never collected.
    """
    gc.freeze()


def _exit_with(message: str, code: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code) from None


# -- checkpoints -------------------------------------------------------------------------------------------------


def load_checkpoint(path: str | Path, param: str = "--ckpt_path") -> dict[str, Any]:
    """Read a Lightning checkpoint with ``torch.load(weights_only=True)``: no pickled code runs.

    Raises:
        UserInputError: The file is missing, a folder, empty, truncated, not a PyTorch file, holds
            pickled Python objects, or has no ``state_dict``; the message starts with ``param FILE:``.
    """
    import torch

    file = Path(path)
    where = f"{param} {file}"
    if not file.exists():
        raise UserInputError(f"{where}: no such file ({FROM_FIT})")
    if not file.is_file():
        raise UserInputError(f"{where}: not a file ({FROM_FIT})")
    if file.stat().st_size == 0:
        raise UserInputError(f"{where}: the file is empty ({FROM_FIT})")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "unsupported global" in str(error).lower():  # a class or function to import and call: refused
            raise UserInputError(
                f"{where}: refused: it holds pickled Python objects besides tensors and plain data, which could run "
                "code when loaded; only weights-only checkpoints (as scripts/fit.py writes) are accepted"
            ) from error
        raise UserInputError(f"{where}: not a PyTorch checkpoint (unreadable pickle data)") from error
    except (EOFError, zipfile.BadZipFile) as error:
        raise UserInputError(f"{where}: not a PyTorch checkpoint, or truncated (the file ends early)") from error
    except Exception as error:  # garbage makes the weights-only unpickler fail in many ways
        raise UserInputError(f"{where}: not a PyTorch checkpoint, or truncated ({FROM_FIT})") from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserInputError(f"{where}: not a Lightning checkpoint (no state_dict); {FROM_FIT}")
    return checkpoint


def load_classifier(path: str | Path, param: str = "--ckpt_path") -> BiGRUClassifier:
    """Rebuild the trained :class:`BiGRUClassifier` (eval mode, on the CPU) from a checkpoint of scripts/fit.py.

    Raises:
        UserInputError: As :func:`load_checkpoint`, or the checkpoint holds a model this version
            cannot rebuild ("incompatible checkpoint").
    """
    return classifier_from_checkpoint(load_checkpoint(path, param), f"{param} {path}")


def classifier_from_checkpoint(checkpoint: dict[str, Any], where: str) -> BiGRUClassifier:
    """The :class:`BiGRUClassifier` (eval mode, on the CPU) of a checkpoint read by :func:`load_checkpoint`.

    Raises:
        UserInputError: The checkpoint holds a model this version cannot rebuild (the message starts
            with ``where``).
    """
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict):
        raise UserInputError(f"{where}: incompatible checkpoint: no hyper-parameters of a BiGRUClassifier")
    from bigru_lightning.module import BiGRUClassifier

    accepted = set(inspect.signature(BiGRUClassifier.__init__).parameters) - {"self"}
    init_args = {key: value for key, value in hparams.items() if not str(key).startswith("_")}
    unknown = sorted(set(init_args) - accepted)
    if unknown:
        raise UserInputError(f"{where}: incompatible checkpoint (unknown hyper-parameters: {', '.join(unknown)})")
    try:
        model = BiGRUClassifier(**init_args)
        model.load_state_dict(checkpoint["state_dict"], strict=True)
        model.on_load_checkpoint(checkpoint)
    except (UserInputError, RuntimeError, TypeError, ValueError, KeyError) as error:
        raise UserInputError(
            f"{where}: incompatible checkpoint (not a BiGRUClassifier of this version): {one_line(error)[:200]}"
        ) from error
    if len(model.label_names) != model.net.num_classes:
        raise UserInputError(f"{where}: {len(model.label_names)} label names for {model.net.num_classes} classes")
    return model.eval()


# -- output files ------------------------------------------------------------------------------------------------


def check_output(output: Path, overwrite: bool, param: str = "--output") -> None:
    """Refuse an output path that is empty, a folder, exists (unless ``overwrite``), or lies in a missing folder."""
    if str(output) == "" or output.name in ("", ".", ".."):
        raise UserInputError(f"{param} {str(output)!r}: give a file name")
    if output.is_dir():
        raise UserInputError(f"{param} {output}: is a folder; give a file path")
    if output.exists() and not overwrite:
        raise UserInputError(f"{param} {output}: {_EXISTS}")
    if not output.parent.is_dir():
        raise UserInputError(f"{param} {output}: folder {output.parent} does not exist")


_EXISTS = "already exists; choose another path or add --overwrite"


@contextlib.contextmanager
def atomic_output(
    target: Path, *, overwrite: bool = True, param: str = "--output", durable: bool = False
) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; when the block succeeds, rename it to ``target``.

    The temporary file (``.<name>.<random>.tmp``) is removed whatever happens, so a failure or a kill
    leaves either the previous file or the new one, never a torn one. Without ``overwrite`` a file that
    appeared at ``target`` meanwhile is never replaced (:class:`UserInputError` naming ``param``).
    ``durable`` fsyncs the file and its folder (for checkpoints that must survive a power cut).
    """
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        _give_default_mode(temporary)
        if durable:
            _fsync(temporary, os.O_RDONLY)
        _put_in_place(temporary, target, overwrite, param)
        if durable:
            _fsync(target.parent, os.O_RDONLY)
    finally:
        temporary.unlink(missing_ok=True)


def _put_in_place(temporary: Path, target: Path, overwrite: bool, param: str) -> None:
    if overwrite:
        os.replace(temporary, target)
        return
    try:
        os.link(temporary, target)  # atomic, and fails if target exists: nothing is clobbered
    except FileExistsError:
        raise UserInputError(f"{param} {target}: {_EXISTS}") from None
    except OSError:  # a file system without hard links
        if target.exists():
            raise UserInputError(f"{param} {target}: {_EXISTS}") from None
        os.replace(temporary, target)


def _give_default_mode(path: Path) -> None:
    """Give the temporary file (created private) the mode a plainly created file would have."""
    mask = os.umask(0)
    os.umask(mask)
    path.chmod(0o666 & ~mask)


def _fsync(path: Path, flags: int) -> None:
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
