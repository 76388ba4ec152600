"""scripts/tune.py: a study of fit runs, reproducing its best trial, sharing, resuming, pruning, bad input."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import REPO, hparams_entry, script_env
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bigru_lightning.cli import main as fit_main
from bigru_lightning.sweeps import main as tune_main
from bigru_lightning.sweeps import split_args
from bigru_lightning.sweeps.report import describe_best, trials_table
from bigru_lightning.sweeps.space import load_search_space, option_args

TUNE = str(REPO / "scripts" / "tune.py")
SMALL_RUN = ["--trainer.max_epochs=3", "--data.init_args.samples_per_class=30"]


def _space(folder: Path, text: str) -> str:
    path = folder / "space.yaml"
    path.write_text(text)
    return str(path)


def _load(storage: str, name: str = "sweep") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def _scalars(run_dir: Path, tag: str) -> list[float]:
    values: list[float] = []
    for events in sorted(run_dir.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            values += [event.value for event in accumulator.Scalars(tag)]
    return values


def _hparams_plugins(run_dir: Path) -> set[str]:
    plugins: set[str] = set()
    for events in run_dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        with contextlib.suppress(KeyError):
            plugins |= set(accumulator.PluginTagToContent("hparams"))
    return plugins


def test_split_args_separates_tune_options_from_fit_options() -> None:
    tune, fit = split_args(
        ["--search_space", "s.yaml", "--model.hidden_size=8", "--pruner", "NopPruner", "--pruner.x=1", "--n_trials=3"]
    )
    assert tune == ["--search_space", "s.yaml", "--pruner", "NopPruner", "--pruner.x=1", "--n_trials=3"]
    assert fit == ["--model.hidden_size=8"]


def test_search_space_reads_ranges_log_scales_and_choices_of_lists(tmp_path: Path) -> None:
    text = (
        "model.hidden_size: {low: 8, high: 64, log: true}\nmodel.dropout: {low: 0.0, high: 0.5, step: 0.25}\n"
        "optimizer.lr: {low: 1.0e-4, high: 1.0e-1, log: true}\nmodel.conv_channels: [null, [64, 128, 64]]\n"
    )
    space = load_search_space(_space(tmp_path, text))
    hidden, dropout, lr, channels = space.dimensions
    assert len(channels.choices) == 2
    assert (hidden.integer, hidden.log, dropout.integer, lr.integer, lr.log) == (True, True, False, False, True)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [space.suggest(study.ask()) for _ in range(20)]
    assert all(8 <= d["model.hidden_size"] <= 64 and isinstance(d["model.hidden_size"], int) for d in drawn)
    assert {d["model.dropout"] for d in drawn} <= {0.0, 0.25, 0.5}
    assert all(1e-4 <= d["optimizer.lr"] <= 1e-1 for d in drawn)
    assert {json.dumps(d["model.conv_channels"]) for d in drawn} == {"null", "[64, 128, 64]"}
    args = option_args({"model.conv_channels": [64, 128, 64], "model.pooling": "mean", "data.batch_size": None})
    assert args == ["--model.conv_channels=[64, 128, 64]", "--model.pooling=mean", "--data.batch_size=null"]


def test_six_trial_study_and_its_best_config_reproduces_the_metric(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = _space(
        in_tmp,
        "model.hidden_size: {choices: [4, 16]}\noptimizer.lr: {low: 1.0e-3, high: 1.0e-1, log: true}\n"
        "model.pooling: {choices: [final_state, mean]}\n",
    )
    study = tune_main(["--search_space", space, "--n_trials", "6", "--pruner", "NopPruner", *SMALL_RUN])
    out = capsys.readouterr().out
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 6 == len(study.trials)
    run_dirs = {t.user_attrs["run_dir"] for t in trials}
    assert run_dirs == {f"lightning_logs/version_{n}" for n in range(6)}
    for trial in trials:  # every trial is an ordinary run whose config holds its searched options
        config = yaml.safe_load((Path(trial.user_attrs["run_dir"]) / "config.yaml").read_text())
        assert config["model"]["hidden_size"] == trial.params["model.hidden_size"]
        assert config["model"]["pooling"] == trial.params["model.pooling"]
        assert config["optimizer"]["init_args"]["lr"] == pytest.approx(trial.params["optimizer.lr"])
        assert config["checkpoint"]["monitor"] == "val/loss"
        assert trial.value == pytest.approx(min(_scalars(Path(trial.user_attrs["run_dir"]), "val/loss")))

    best = study.best_trial
    best_dir = Path(best.user_attrs["run_dir"])
    assert f"Best trial {best.number}: val/loss {best.value:.4f}" in out
    assert f"Reproduce it: python scripts/fit.py --config {best_dir / 'config.yaml'}" in out
    # TensorBoard's HParams view: the trial's entry and its value as a scalar
    assert "_hparams_/session_start_info" in _hparams_plugins(best_dir)
    assert _scalars(best_dir, "trial/value") == [pytest.approx(best.value)]
    # the results beside the runs
    rows = list(csv.DictReader((in_tmp / "lightning_logs/sweep/trials.csv").open()))
    assert [int(row["number"]) for row in rows] == list(range(6))
    assert [float(row["val/loss"]) for row in rows] == pytest.approx([t.value for t in trials])
    for png in ("optimization_history.png", "param_importances.png"):
        assert (in_tmp / "lightning_logs/sweep" / png).read_bytes()[:4] == b"\x89PNG"

    fit_main(["--config", str(best_dir / "config.yaml")])
    rerun = in_tmp / "lightning_logs/version_6"
    assert min(_scalars(rerun, "val/loss")) == pytest.approx(best.value, rel=1e-5)


def _tune_command(space: str, storage: str, n_trials: int, *extra: str) -> list[str]:
    return [sys.executable, TUNE, "--search_space", space, "--storage", storage, "--n_trials", str(n_trials), *extra]


def test_two_processes_share_one_study_without_running_a_trial_twice(tmp_path: Path) -> None:
    space = _space(tmp_path, "optimizer.lr: {low: 1.0e-3, high: 1.0e-1, log: true}\n")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = _tune_command(space, storage, 8, "--pruner", "NopPruner", "--heartbeat", "2", *SMALL_RUN)
    processes = [
        subprocess.Popen(command, cwd=tmp_path, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300)[0].decode() for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    study = _load(storage)
    finished = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(finished) == 8
    run_dirs = [t.user_attrs["run_dir"] for t in finished]
    assert len(set(run_dirs)) == 8  # each trial its own run
    assert len(list((tmp_path / "lightning_logs").glob("version_*"))) == 8  # and no run beyond them
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # both processes did some


def _wait_for(condition: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_a_killed_study_continues_with_the_same_command(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = _space(in_tmp, "optimizer.lr: {low: 1.0e-3, high: 1.0e-1, log: true}\n")
    storage = f"sqlite:///{in_tmp / 'study.db'}"
    args = ["--search_space", space, "--storage", storage, "--n_trials", "3", "--pruner", "NopPruner"]
    args += ["--heartbeat", "1", "--trainer.max_epochs=80", "--data.init_args.samples_per_class=30"]
    process = subprocess.Popen([sys.executable, TUNE, *args], cwd=in_tmp, env=script_env(), stdout=subprocess.DEVNULL)
    try:  # kill it (SIGKILL: no clean-up at all) during its second trial, as soon as that trial's run has begun
        # (a fixed wait after that raced the trial's short epochs: on a quiet machine they end within 0.5 s)
        _wait_for(lambda: (in_tmp / "lightning_logs/version_1/config.yaml").exists(), 240)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    study = _load(storage)
    states = {t.number: t.state for t in study.trials}
    assert states[0] == optuna.trial.TrialState.COMPLETE and states[1] == optuna.trial.TrialState.RUNNING
    killed_params = study.trials[1].params
    first_config = (in_tmp / "lightning_logs/version_0/config.yaml").read_text()

    tune_main(args)  # the same command again

    study = _load(storage)
    by_state = {state: [t for t in study.trials if t.state == state] for state in optuna.trial.TrialState}
    assert len(by_state[optuna.trial.TrialState.COMPLETE]) == 3
    assert [t.number for t in by_state[optuna.trial.TrialState.FAIL]] == [1]  # the killed one, marked failed
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == 1]
    assert len(retried) == 1 and retried[0].params == killed_params  # and rerun with its options
    assert retried[0].state == optuna.trial.TrialState.COMPLETE
    assert study.trials[0].user_attrs["run_dir"] == "lightning_logs/version_0"
    assert (in_tmp / "lightning_logs/version_0/config.yaml").read_text() == first_config  # finished runs untouched
    assert "Best trial" in capsys.readouterr().out


def test_pruning_stops_a_hopeless_trial_early(in_tmp: Path) -> None:
    space = _space(in_tmp, "optimizer.lr: {choices: [0.05, 1.0e-6]}\n")
    max_epochs = 8
    sampler = ["--sampler", "BruteForceSampler", "--sampler.seed", "0"]
    pruner = ["--pruner", "ThresholdPruner", "--pruner.upper", "0.6", "--pruner.n_warmup_steps", "2"]
    run = [f"--trainer.max_epochs={max_epochs}", "--data.init_args.samples_per_class=30"]
    study = tune_main(["--search_space", space, "--n_trials", "2", *sampler, *pruner, *run])
    by_lr = {t.params["optimizer.lr"]: t for t in study.trials}
    hopeless, good = by_lr[1.0e-6], by_lr[0.05]
    assert hopeless.state == optuna.trial.TrialState.PRUNED
    assert max(hopeless.intermediate_values) == 2 < max_epochs - 1  # stopped at the first epoch it could be
    assert len(_scalars(Path(hopeless.user_attrs["run_dir"]), "val/loss")) == 3
    assert good.state == optuna.trial.TrialState.COMPLETE
    assert len(good.intermediate_values) == max_epochs
    rows = list(csv.DictReader((in_tmp / "lightning_logs/sweep/trials.csv").open()))
    assert sorted(row["state"] for row in rows) == ["COMPLETE", "PRUNED"]


@pytest.mark.parametrize(
    ("space", "extra", "message"),
    [
        ("model.hiden_size: {low: 8, high: 16}\n", [], r"--search_space .*space.yaml: .*model\.hiden_size"),
        ("model.dropout: {low: 0.5, high: 0.1}\n", [], r"model\.dropout: low 0.5 is greater than high 0.1"),
        ("model.pooling: {choices: [mean, median]}\n", [], r"--search_space .*model\.pooling.*median"),
        ("optimizer.lr: {low: 0.001, high: 0.1}\n", ["--metric", "val/f1"], r"--metric val/f1: unknown"),
        ("optimizer.lr: {low: 0.001, high: 0.1}\n", ["--storage", "sqlite:////no/such/dir/x.db"], r"--storage .*"),
        ("optimizer.lr: {low: 0.001, high: 0.1}\n", ["--storage", "nosuchdb://host/x"], r"--storage nosuchdb"),
        ("optimizer.lr: {low: 0.001, high: 0.1}\n", ["--model.hiden_size=3"], r"hiden_size"),
    ],
    ids=["unknown-option", "low-above-high", "unknown-choice", "unknown-metric", "sqlite-dir", "bad-url", "fit-opt"],
)
def test_bad_input_is_one_error_line_and_writes_nothing(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], space: str, extra: list[str], message: str
) -> None:
    space_file = (in_tmp.parent / f"{in_tmp.name}-space.yaml").resolve()
    space_file.write_text(space)
    with pytest.raises(SystemExit) as exit_info:
        tune_main(["--search_space", str(space_file), *extra])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(message, lines[0]), lines[0]
    assert list(in_tmp.iterdir()) == []  # nothing written


def test_every_option_type_is_searchable_and_readable_in_the_hparams_table(in_tmp: Path) -> None:
    """Lists, null, nested class paths and booleans: each trial runs, and HParams shows them as text."""
    space = _space(
        in_tmp,
        "model.conv_channels: {choices: [[4, 8, 4]]}\nmodel.class_weights: {choices: [null]}\n"
        "model.bidirectional: {choices: [false]}\n"
        "optimizer: {choices: [{class_path: torch.optim.SGD, init_args: {lr: 0.1}}]}\n"
        "data.init_args.means: {choices: [[1.0, -1.0]]}\n",
    )
    study = tune_main(["--search_space", space, "--n_trials", "1", "--trainer.max_epochs=1", *SMALL_RUN[1:]])
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    run_dir = Path(trial.user_attrs["run_dir"])
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["conv_channels"] == [4, 8, 4] and config["model"]["bidirectional"] is False
    assert config["optimizer"]["class_path"] == "torch.optim.SGD"
    _, values = hparams_entry(run_dir)
    assert values["trial.model.conv_channels"] == values["model.conv_channels"] == "[4, 8, 4]"
    assert values["trial.model.class_weights"] == values["model.class_weights"] == "null"
    assert values["trial.model.bidirectional"] == values["model.bidirectional"] == "false"
    assert values["trial.optimizer"] == "torch.optim.SGD(lr=0.1)" and values["optimizer"] == "SGD"
    assert values["trial.data.init_args.means"] == "[1.0, -1.0]"


@pytest.mark.parametrize("space_file", sorted((REPO / "configs" / "search").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_search_spaces_run_a_two_trial_study(in_tmp: Path, space_file: Path) -> None:
    """Each file of configs/search/ on tiny budgets (one epoch); seed 2 draws a list and a null conv_channels."""
    sampler = ["--sampler", "RandomSampler", "--sampler.seed", "2", "--pruner", "NopPruner"]
    tiny = ["--trainer.max_epochs=1", "--data.init_args.samples_per_class=10", "--data.init_args.seq_len=8"]
    study = tune_main(["--search_space", str(space_file), "--n_trials", "2", *sampler, *tiny])
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for trial in study.trials:
        searched = {key for key in hparams_entry(Path(trial.user_attrs["run_dir"]))[1] if key.startswith("trial.")}
        assert searched == {"trial.number", *(f"trial.{option}" for option in yaml.safe_load(space_file.read_text()))}
    if "model.conv_channels" in study.trials[0].params:
        assert {t.params["model.conv_channels"] for t in study.trials} >= {"null"}
        assert any(t.params["model.conv_channels"].startswith("[") for t in study.trials)


def test_study_follows_default_root_dir(in_tmp: Path) -> None:
    """Trials, the study's database and its results go under ``--trainer.default_root_dir``."""
    space = _space(in_tmp, "model.hidden_size: {choices: [4]}\n")
    run = ["--trainer.max_epochs=1", *SMALL_RUN[1:], "--trainer.default_root_dir", "runs"]
    study = tune_main(["--search_space", space, "--n_trials", "1", *run])
    assert study.trials[0].user_attrs["run_dir"] == "runs/lightning_logs/version_0"
    for written in ("version_0/config.yaml", "optuna.db", "sweep/trials.csv"):
        assert (in_tmp / "runs/lightning_logs" / written).is_file(), written
    assert not (in_tmp / "lightning_logs").exists()


def test_trials_table_and_best_trial_show_null_and_booleans_as_options_take_them(tmp_path: Path) -> None:
    space = load_search_space(
        _space(tmp_path, "data.batch_size: {choices: [null]}\nmodel.bidirectional: {choices: [true]}\n")
    )
    study = optuna.create_study()
    trial = study.ask()
    assert space.suggest(trial) == {"data.batch_size": None, "model.bidirectional": True}
    study.tell(trial, 0.5)
    rows = list(csv.DictReader(io.StringIO(trials_table(study.trials, "val/loss"))))
    assert (rows[0]["data.batch_size"], rows[0]["model.bidirectional"]) == ("null", "true")
    assert describe_best(study, "val/loss")[1:3] == ["  data.batch_size: null", "  model.bidirectional: true"]
