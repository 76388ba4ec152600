"""The study: its storage (a SQLite file beside the runs, or any database URL) and the loop that fills it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError, OperationalError

from bigru_lightning.errors import UserInputError
from bigru_lightning.sweeps.trial import SurplusTrialError

DEFAULT_STORAGE_FILE = "optuna.db"
SCHEMA_ATTEMPTS = 5
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def default_storage_url(runs_dir: Path) -> str:
    """The embedded default: a SQLite file beside the runs (no server needed)."""
    return f"sqlite:///{runs_dir / DEFAULT_STORAGE_FILE}"


def open_storage(url: str, heartbeat: int) -> RDBStorage:
    """Open the study database at ``url``, with heartbeats so that trials of a killed process are retried.

    A trial whose process has not sent a heartbeat for ``3 * heartbeat`` seconds is marked failed and
    its options are queued again (once), so a study that was killed continues where it stopped.
    """
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return RDBStorage(
                url,
                heartbeat_interval=heartbeat,
                grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
        except (IntegrityError, OperationalError) as error:
            # Processes opening a new database at once race to create its tables: the losers try again.
            racing = isinstance(error, IntegrityError) or "already exists" in str(error) or "locked" in str(error)
            if not racing or attempt == SCHEMA_ATTEMPTS - 1:
                raise _cannot_open(url, error) from error
            time.sleep(0.5 + random.random())
        except Exception as error:  # SQLAlchemy and its drivers fail with many exception types
            raise _cannot_open(url, error) from error
    raise AssertionError("unreachable")


def _cannot_open(url: str, error: Exception) -> UserInputError:
    detail = " ".join(str(error).split("\n")[0].split())[:200]
    return UserInputError(
        f"--storage {url}: cannot be opened ({type(error).__name__}: {detail}); accepted: a database URL "
        "that Optuna opens, e.g. sqlite:///study.db or postgresql://user:password@host/database"
    )


def fill_study(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_trials: int,
    timeout: float | None,
    poll_seconds: float,
) -> int:
    """Run trials until the study (all processes together) has ``n_trials`` finished ones, or ``timeout`` passes.

    Returns how many trials this process started. When the last trials are running in other
    processes this one waits for them, as one of them may fail (a killed process) and need rerunning.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    started = failures = 0
    while deadline is None or time.monotonic() < deadline:
        fail_stale_trials(study)
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if finished >= n_trials or failures > n_trials:
            break
        if finished + running >= n_trials:
            time.sleep(poll_seconds)
            continue
        outcomes: list[TrialState] = []
        study.optimize(objective, n_trials=1, catch=(UserInputError, SurplusTrialError), callbacks=[_Outcome(outcomes)])
        started += 1
        failures += outcomes == [TrialState.FAIL]
    return started


class _Outcome:
    """An Optuna callback that keeps the state of each trial this process finished."""

    def __init__(self, states: list[TrialState]) -> None:
        self.states = states

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.states.append(trial.state)
