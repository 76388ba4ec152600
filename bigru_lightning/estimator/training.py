"""Fitting on arrays through the CLI itself: the same parser, recipe, data module, Trainer and checkpoint choice.

:func:`fit_on_arrays` holds the arrays in memory under ``memory://`` names
(:mod:`bigru_lightning.data.memory`), builds ``scripts/fit.py``'s command line for them
(``--data FileDataModule --data.train_file memory://...``) and runs :meth:`BiGRUCLI.fit_and_choose`,
so every rule (the recipe's choices, the label mapping, the validation split of larger data, the
standardisation, the seeds and the best/last checkpoint) is the CLI's. What the estimator adds:
no output unless asked (no logger and a temporary folder for the checkpoints, which is removed), and
quiet (no progress bar, summary, recipe lines or Lightning info logs unless ``verbose``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger

from bigru_lightning.app import load_checkpoint
from bigru_lightning.callbacks import write_hparams_entry
from bigru_lightning.cli import expand_shorthands, make_cli, quiet_known_warnings
from bigru_lightning.data.files import SequenceFile
from bigru_lightning.data.memory import held_in_memory
from bigru_lightning.errors import find_user_error, one_line

# What a fitted estimator keeps of the chosen checkpoint (and ``save`` writes): what rebuilds the
# model (as ``scripts/predict.py`` and ``scripts/export.py`` do) and where it came from.
KEPT_KEYS = (
    "state_dict",
    "hyper_parameters",
    "label_names",
    "datamodule_hyper_parameters",
    "epoch",
    "global_step",
    "pytorch-lightning_version",
)
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")
TENSORBOARD = "lightning.pytorch.loggers.TensorBoardLogger"


@contextlib.contextmanager
def quiet(verbose: bool) -> Iterator[None]:
    """Without ``verbose``: no printed lines and no Lightning info logs while the block runs (restored after)."""
    with warnings.catch_warnings():
        quiet_known_warnings()  # Lightning's expected messages, filtered as the CLI filters them
        if verbose:
            yield
            return
        loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def fit_on_arrays(
    train: SequenceFile,
    options: list[str],
    *,
    test: SequenceFile | None = None,
    verbose: bool = False,
    log_dir: str | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit as ``scripts/fit.py --data FileDataModule`` does on a file holding ``train``.

    Args:
        train: The training sequences with their class indices as ``labels``. All of them train, as
            when ``fit.py`` is given a test file (the recipe holds out a validation split of larger data).
        options: Further ``fit.py`` options (the estimator's keywords and seeds).
        test: Test sequences: tested after fitting as ``fit.py`` tests its test file (metrics, and
            with ``log_dir`` the figures and HParams entry). None: no test.
        verbose: Show the progress bar, model summary, recipe lines and Lightning's logs.
        log_dir: Write the usual TensorBoard run (events, config, checkpoints) under this folder;
            None: nothing is written (checkpoints go to a temporary folder that is removed).

    Returns:
        The chosen checkpoint's :data:`KEPT_KEYS`, and the test metrics (empty without ``test``).

    Raises:
        ValueError: An option the CLI refuses (one line).
        KeyboardInterrupt: The fit was interrupted (Ctrl-C).
    """
    with contextlib.ExitStack() as stack:
        train_name = stack.enter_context(held_in_memory(train, "X"))
        test_name = stack.enter_context(held_in_memory(test, "test_data")) if test is not None else train_name
        folder = log_dir if log_dir is not None else stack.enter_context(tempfile.TemporaryDirectory())
        argv = ["--data", "FileDataModule", "--data.train_file", train_name, "--data.test_file", test_name]
        argv += [*options, "--trainer.default_root_dir", folder, *_output_options(folder, log_dir, verbose)]
        stack.enter_context(quiet(verbose))
        stack.enter_context(as_value_errors())
        cli = make_cli(expand_shorthands(argv))
        best = cli.fit_and_choose()
        if cli.trainer.interrupted:
            raise KeyboardInterrupt("fitting was interrupted")
        metrics: dict[str, float] = {}
        if test is not None:
            metrics = cli.test_and_report(best)
        elif isinstance(cli.trainer.logger, TensorBoardLogger) and cli.trainer.is_global_zero:
            last = {key: float(value) for key, value in cli.trainer.callback_metrics.items()}
            write_hparams_entry(cli.trainer.logger, *cli.hparams_entry(last))  # the run's HParams entry
            cli.trainer.logger.finalize("success")
        if best:
            checkpoint = load_checkpoint(best, "checkpoint")
        else:  # no checkpoint written (e.g. fast_dev_run): the weights as they are
            checkpoint = {"state_dict": cli.model.state_dict(), "hyper_parameters": dict(cli.model.hparams)}
            cli.model.on_save_checkpoint(checkpoint)
        return {key: checkpoint[key] for key in KEPT_KEYS if key in checkpoint}, metrics


@contextlib.contextmanager
def as_value_errors() -> Iterator[None]:
    """The CLI's user errors (bad option values, refused data) as one-line ``ValueError``s naming the keyword."""
    try:
        yield
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None:
            raise
        message = re.sub(r"--(?:model|data|trainer|optimizer)\.(\w+)", r"\1", one_line(user_error))
        raise ValueError(message) from error


def _output_options(folder: str, log_dir: str | None, verbose: bool) -> list[str]:
    """Logger, checkpoint folder, progress bar and summary for a run in ``folder``."""
    switch = json.dumps(verbose)
    options = ["--trainer.enable_progress_bar", switch, "--trainer.enable_model_summary", switch]
    if log_dir is None:
        return [*options, "--trainer.logger", "false", "--checkpoint.dirpath", f"{folder}/checkpoints"]
    logger = {"class_path": TENSORBOARD, "init_args": {"save_dir": log_dir, "default_hp_metric": False}}
    return [*options, "--trainer.logger", json.dumps(logger)]
