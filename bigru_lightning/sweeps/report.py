"""What a person looks at after a study: the trials table (CSV), two plots (PNG) and the best trial."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bigru_lightning.callbacks import hparam_value

TABLE_FILE = "trials.csv"
HISTORY_FILE = "optimization_history.png"
IMPORTANCE_FILE = "param_importances.png"


def write_results(study: optuna.Study, folder: Path, metric: str) -> list[Path]:
    """Write the trials table and the optimisation-history and parameter-importance plots into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / TABLE_FILE]
    _write_atomically(written[0], trials_table(study.trials, metric).encode())
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete:
        written.append(_plot(folder / HISTORY_FILE, study, metric, importance=False))
    if len(complete) >= 2 and complete[0].params:
        written.append(_plot(folder / IMPORTANCE_FILE, study, metric, importance=True))
    return written


def trials_table(trials: list[FrozenTrial], metric: str) -> str:
    """The trials as CSV: number, state, value, seconds, each searched option, run folder."""
    options = list(dict.fromkeys(name for trial in trials for name in trial.params))
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["number", "state", metric, "seconds", *options, "run_dir"])
    for trial in trials:
        seconds = trial.duration.total_seconds() if trial.duration is not None else ""
        value = trial.value if trial.value is not None else trial.user_attrs.get("best_value", "")
        row: list[Any] = [trial.number, trial.state.name, value, seconds]
        row += [hparam_value(trial.params[name]) if name in trial.params else "" for name in options]
        writer.writerow([*row, trial.user_attrs.get("run_dir", "")])
    return stream.getvalue()


def describe_best(study: optuna.Study, metric: str) -> list[str]:
    """Lines naming the best trial: its value, options, run folder and the command that reproduces it."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return ["No trial has finished yet."]
    best = study.best_trial
    run_dir = best.user_attrs.get("run_dir", "?")
    lines = [f"Best trial {best.number}: {metric} {best.value:.4f} ({len(complete)} complete)"]
    lines += [f"  {name}: {hparam_value(value)}" for name, value in best.params.items()]
    lines.append(f"Reproduce it: python scripts/fit.py --config {Path(run_dir) / 'config.yaml'}")
    return lines


def _plot(path: Path, study: optuna.Study, metric: str, importance: bool) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        if importance:
            axes = optuna_plots.plot_param_importances(study, target_name=metric)
        else:
            axes = optuna_plots.plot_optimization_history(study, target_name=metric)
    figure = axes.get_figure(root=True)
    assert figure is not None
    figure.set_size_inches(7, 4.5)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    _write_atomically(path, buffer.getvalue())
    return path


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp_name, 0o666 & ~umask)  # mkstemp makes the file private; results are ordinary files
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
