"""One trial: an ordinary fit run (its own ``version_N`` with ``config.yaml``) with pruning and a value."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import optuna
from filelock import FileLock
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from bigru_lightning.cli import BiGRUCLI, make_cli
from bigru_lightning.errors import UserInputError
from bigru_lightning.figures.callback import TestFigureLogger
from bigru_lightning.sweeps.space import SearchSpace, option_args

#: Metrics a study may optimise, with their direction.
METRICS: dict[str, Literal["minimize", "maximize"]] = {"val/loss": "minimize", "val/acc": "maximize"}
VALUE_TAG = "trial/value"


class SurplusTrialError(RuntimeError):
    """Another process started the study's last trial first: this one is not run."""


class TrialInterruptedError(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a trial; ``exit_code`` is 130 or 143 (as the fit command exits)."""

    def __init__(self, exit_code: int) -> None:
        super().__init__()
        self.exit_code = exit_code


class BestMetric(Callback):
    """Keep the best value of ``metric`` over the validation epochs (the trial's value)."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.maximize = METRICS[metric] == "maximize"
        self.value: float | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record this epoch's value if it is the best so far."""
        current = trainer.callback_metrics.get(self.metric)
        if trainer.sanity_checking or current is None:
            return
        value = float(current)
        if self.value is None or (value > self.value if self.maximize else value < self.value):
            self.value = value


class TrialCLI(BiGRUCLI):
    """The fit command, whose TensorBoard HParams entry also holds the searched options and the trial's value."""

    trial_number: int = -1
    searched: dict[str, Any] = {}  # noqa: RUF012 (set per instance by run_trial)
    best: BestMetric | None = None

    def hparams_entry(self, metrics: dict[str, float]) -> tuple[dict[str, Any], dict[str, float]]:
        """Add ``trial`` (number and searched options) to the params and the trial's value to the metrics.

        The value is also logged as the scalar ``trial/value``, which the HParams view reads.
        """
        params, metrics = super().hparams_entry(metrics)
        params.update({f"trial.{key}": value for key, value in {"number": self.trial_number, **self.searched}.items()})
        value = self.best.value if self.best is not None else None
        logger = self.trainer.logger
        if value is not None and logger is not None:
            logger.log_metrics({VALUE_TAG: value}, step=self.trainer.global_step)
            metrics = {**metrics, VALUE_TAG: value}
        return params, metrics


def fixed_args(metric: str, fit_args: Sequence[str]) -> list[str]:
    """fit.py's arguments shared by every trial: checkpoints chosen by ``metric``, then the user's own options."""
    mode = "max" if METRICS[metric] == "maximize" else "min"
    return [f"--checkpoint.monitor={metric}", f"--checkpoint.mode={mode}", *fit_args]


def run_trial(trial: optuna.Trial, space: SearchSpace, metric: str, fit_args: Sequence[str], n_trials: int) -> float:
    """Run one fit with ``trial``'s options and return the best ``metric`` of its validation epochs."""
    check_not_surplus(trial, n_trials)
    searched = space.suggest(trial)
    cli = make_cli([*fixed_args(metric, fit_args), *option_args(searched)], cli_class=TrialCLI)
    assert isinstance(cli, TrialCLI)
    best = BestMetric(metric)
    cli.trial_number, cli.searched, cli.best = trial.number, searched, best
    # The test figures (confusion matrix, ROC) cost more than a small trial's training: the best trial's
    # reproduced run draws them. Callbacks are not part of config.yaml, so the run reproduces all the same.
    callbacks = [c for c in cli.trainer.callbacks if not isinstance(c, TestFigureLogger)]  # type: ignore[attr-defined]
    cli.trainer.callbacks = [*callbacks, best, PyTorchLightningPruningCallback(trial, monitor=metric)]  # type: ignore[attr-defined]
    run_dir = claim_run_folder(cli.trainer.logger)
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    try:
        cli.run()
    except optuna.TrialPruned:
        trial.set_user_attr("best_value", best.value)
        raise
    except (KeyboardInterrupt, SIGTERMException) as error:
        requeue(trial)
        raise TrialInterruptedError(143 if isinstance(error, SIGTERMException) else 130) from None
    if cli.trainer.interrupted:  # the first Ctrl-C stops Lightning gracefully: the trial is unfinished
        requeue(trial)
        raise TrialInterruptedError(130)
    if best.value is None:
        raise UserInputError(f"--metric {metric}: the runs do not log it (no validation epoch?)")
    return best.value


def check_not_surplus(trial: optuna.Trial, n_trials: int) -> None:
    """Refuse ``trial`` when ``n_trials`` trials numbered before it are already running or finished."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    earlier = [t for t in trial.study.get_trials(deepcopy=False, states=states) if t.number < trial.number]
    if len(earlier) >= n_trials:
        raise SurplusTrialError(f"the study already has its {n_trials} trials")


def claim_run_folder(logger: Logger | None) -> Path:
    """Pick this run's ``version_N`` and create it, under a lock so parallel trials never share one."""
    if logger is None or logger.root_dir is None:
        raise UserInputError("--trainer.logger: tune.py needs a logger with a folder (each trial is a run), got none")
    root = Path(logger.root_dir)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / ".tune.lock"):
        log_dir = logger.log_dir  # the logger lists the existing version_* folders here, picking the next
        if log_dir is None:
            raise UserInputError("--trainer.logger: tune.py needs a logger with a folder (each trial is a run)")
        run_dir = Path(log_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def requeue(trial: optuna.Trial) -> None:
    """Put an interrupted trial's options back in the queue, so that the next run of the study tries them first."""
    trial.study.enqueue_trial(dict(trial.params), user_attrs={"requeued_from": trial.number}, skip_if_exists=False)
