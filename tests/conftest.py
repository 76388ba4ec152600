"""Shared fixtures: every test runs in its own folder so lightning_logs/ never leaks."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

# OpenMP threads that spin while waiting slowed CPU GRU training about 300x when another job held a core
# (shared machines, CI); passive waiting avoids it. Set before torch starts its thread pool; subprocesses
# of the tests inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test with ``tmp_path`` as the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _no_debug_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BIGRU_DEBUG", raising=False)
    warnings.filterwarnings("ignore", category=UserWarning)


def script_env() -> dict[str, str]:
    """Environment for running the project's scripts as subprocesses."""
    env = dict(os.environ)
    env.pop("BIGRU_DEBUG", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def hparams_entry(run_dir: Path) -> tuple[list[str], dict[str, object]]:
    """(the HParams experiment's column names in order, the session's values) from a run's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    columns: list[str] = []
    values: dict[str, object] = {}
    for events in run_dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        try:
            content = accumulator.PluginTagToContent("hparams")
        except KeyError:
            continue
        for tag, raw in content.items():
            data = HParamsPluginData.FromString(raw)
            if tag == "_hparams_/experiment":
                columns = [info.name for info in data.experiment.hparam_infos]
            elif tag == "_hparams_/session_start_info":
                for name, value in data.session_start_info.hparams.items():
                    values[name] = getattr(value, value.WhichOneof("kind"))
    return columns, values
