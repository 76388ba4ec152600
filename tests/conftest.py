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
