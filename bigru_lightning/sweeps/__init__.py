"""Hyper-parameter search with Optuna: ``scripts/tune.py`` runs a study of ordinary fit runs.

``main(args)`` takes every option of ``scripts/fit.py`` (the fixed part of each trial) plus the
options in :func:`make_parser` (``--search_space FILE`` and the study's settings). Each trial is a
fit run in its own ``version_N`` folder with its ``config.yaml``; the study lives in a database
(by default a SQLite file beside the runs), so several processes or machines running the same
command share it, and a study that was interrupted continues when the command is run again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import optuna
from jsonargparse import ArgumentParser, Namespace, lazy_instance

from bigru_lightning.app import run_command
from bigru_lightning.cli import check_config_files, expand_shorthands, make_cli, quiet_known_warnings
from bigru_lightning.errors import UserInputError, find_user_error, one_line
from bigru_lightning.sweeps.report import describe_best, write_results
from bigru_lightning.sweeps.space import SearchSpace, load_search_space, option_args
from bigru_lightning.sweeps.study import default_storage_url, fill_study, open_storage
from bigru_lightning.sweeps.trial import METRICS, fixed_args, run_trial

__all__ = ["main", "make_parser", "split_args"]

#: Options that belong to tune.py; every other option is passed to each trial's fit run.
TUNE_OPTIONS = (
    "search_space",
    "n_trials",
    "timeout",
    "metric",
    "study_name",
    "storage",
    "pruner",
    "sampler",
    "heartbeat",
)


def make_parser() -> ArgumentParser:
    """The options of tune.py itself."""
    parser = ArgumentParser(
        prog="tune.py",
        exit_on_error=False,
        description=(
            "Optuna study over scripts/fit.py's options. Every option not listed here (--model.*, --data.*, "
            "--trainer.*, --optimizer, --config, ...) is passed to each trial's fit run as the fixed part; "
            "see `python scripts/fit.py --help`."
        ),
    )
    parser.add_argument(
        "--search_space", type=str, required=True, help="YAML file of searched options (configs/search/)."
    )
    parser.add_argument(
        "--n_trials", type=int, default=20, help="Finished trials the study should have, all processes together."
    )
    parser.add_argument(
        "--timeout", type=float | None, default=None, help="Start no new trial after this many seconds."
    )
    parser.add_argument(
        "--metric", type=str, default="val/loss", help=f"Best validation value of one of {list(METRICS)}."
    )
    parser.add_argument("--study_name", type=str, default="sweep", help="Study name; the same name continues a study.")
    parser.add_argument(
        "--storage",
        type=str | None,
        default=None,
        help="Database URL shared by every process (e.g. postgresql://user:pw@host/db); default: "
        "sqlite:///<runs folder>/optuna.db.",
    )
    parser.add_argument(
        "--pruner",
        type=optuna.pruners.BasePruner,
        default=lazy_instance(optuna.pruners.MedianPruner, n_startup_trials=4, n_warmup_steps=2),
        help="Optuna pruner, given each epoch's value (e.g. NopPruner, HyperbandPruner, --pruner.n_warmup_steps 3).",
    )
    parser.add_argument(
        "--sampler",
        type=optuna.samplers.BaseSampler,
        default=lazy_instance(optuna.samplers.TPESampler),
        help="Optuna sampler (e.g. RandomSampler; --sampler.seed 0 repeats a one-process study).",
    )
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=10,
        help="Seconds between a trial's heartbeats; a trial silent for 3 heartbeats (a killed process) is rerun.",
    )
    return parser


def split_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate tune.py's own options from fit.py's: ``(tune_args, fit_args)``."""
    tune_args: list[str] = []
    fit_args: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        name = arg.partition("=")[0]
        root = name[2:].split(".")[0] if name.startswith("--") else ""
        if root in TUNE_OPTIONS and (root in ("pruner", "sampler") or name[2:] == root):
            tune_args.append(arg)
            if "=" not in arg and index + 1 < len(args):
                tune_args.append(args[index + 1])
                index += 1
        else:
            fit_args.append(arg)
        index += 1
    return tune_args, fit_args


def parse_tune_args(tune_args: Sequence[str]) -> tuple[Namespace, Namespace]:
    """Parse and instantiate tune.py's options; refuse an unknown metric or a non-positive count."""
    parser = make_parser()
    config = parser.parse_args(list(tune_args))
    if config.metric not in METRICS:
        raise UserInputError(f"--metric {config.metric}: unknown (accepted: {', '.join(METRICS)})")
    for name in ("n_trials", "heartbeat"):
        if config[name] < 1:
            raise UserInputError(f"--{name} must be a positive integer; got {config[name]}")
    if config.timeout is not None and not config.timeout > 0:
        raise UserInputError(f"--timeout must be a positive number of seconds; got {config.timeout}")
    return config, parser.instantiate(config)


def check_trial_args(space: SearchSpace, metric: str, fit_args: list[str]) -> Path:
    """Build one trial's run from the fixed options and the space (writing nothing); return the runs folder.

    The fixed options are checked as fit.py checks them; every searched option must be one that
    fit.py accepts, with its lowest value or first choice instantiated and every choice parsed.
    """
    check_config_files(fit_args)
    base = fixed_args(metric, fit_args)
    try:
        with _quiet_lightning():
            cli = make_cli([*base, *option_args(space.examples())])
    except Exception as error:
        if find_user_error(error) is None:
            raise
        with _quiet_lightning():
            make_cli(base)  # the fixed part alone: its own error, as fit.py reports it
        raise UserInputError(
            f"--search_space {Path(space.path).name}: {one_line(find_user_error(error) or error)}"
        ) from error
    for variant in _value_variants(space):
        try:
            cli.parser.parse_args([*base, *option_args(variant)])
        except Exception as error:
            raise UserInputError(f"--search_space {Path(space.path).name}: {one_line(error)}") from error
    logger = cli.trainer.logger
    root = getattr(logger, "root_dir", None)
    if root is None:
        raise UserInputError("--trainer.logger: tune.py needs a logger (each trial is a run folder), got none")
    return Path(root)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Hold back Lightning's set-up messages (seed, devices) while a trial's run is only checked."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _value_variants(space: SearchSpace) -> list[dict[str, object]]:
    """Value sets that together hold every choice and every range's high end."""
    count = max([len(d.choices) for d in space.dimensions] + [2])
    variants = []
    for index in range(1, count):
        variant: dict[str, object] = {}
        for dimension in space.dimensions:
            if dimension.choices:
                variant[dimension.option] = dimension.choices[index % len(dimension.choices)]
            else:
                variant[dimension.option] = int(dimension.high) if dimension.integer else dimension.high  # type: ignore[arg-type]
        variants.append(variant)
    return variants


def tune(args: Sequence[str]) -> optuna.Study:
    """Check everything, open (or continue) the study, run its trials, write the results and print the best."""
    tune_args, fit_args = split_args(expand_shorthands(args))
    config, objects = parse_tune_args(tune_args)
    space = load_search_space(config.search_space)
    runs_dir = check_trial_args(space, config.metric, fit_args)
    url = config.storage
    if url is None:
        runs_dir.mkdir(parents=True, exist_ok=True)
        url = default_storage_url(runs_dir)
    storage = open_storage(url, config.heartbeat)
    direction = METRICS[config.metric]
    study = optuna.create_study(
        study_name=config.study_name,
        storage=storage,
        direction=direction,
        sampler=objects.sampler,
        pruner=objects.pruner,
        load_if_exists=True,
    )
    if study.direction.name.lower() != direction:
        raise UserInputError(
            f"--metric {config.metric}: study {config.study_name!r} in {url} was made to {study.direction.name.lower()}"
        )
    objective = functools.partial(
        run_trial, space=space, metric=config.metric, fit_args=fit_args, n_trials=config.n_trials
    )
    results_dir = runs_dir / config.study_name
    try:
        fill_study(study, objective, config.n_trials, config.timeout, poll_seconds=float(config.heartbeat))
    except KeyboardInterrupt as interrupt:
        write_results(study, results_dir, config.metric)
        print("Interrupted: run the same command again to continue the study.", file=sys.stderr)
        raise SystemExit(getattr(interrupt, "exit_code", 130)) from None
    written = write_results(study, results_dir, config.metric)
    for line in describe_best(study, config.metric):
        print(line)
    print("Results: " + ", ".join(str(path) for path in written))
    return study


def main(args: Sequence[str] | None = None) -> optuna.Study:
    """Run tune.py on ``args`` (default ``sys.argv[1:]``); user mistakes end in one ``error:`` line, exit 2."""
    argv = list(sys.argv[1:] if args is None else args)
    if any(arg in ("-h", "--help") for arg in argv):
        make_parser().print_help()
        raise SystemExit(0)
    quiet_known_warnings()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return run_command(lambda: tune(argv))
