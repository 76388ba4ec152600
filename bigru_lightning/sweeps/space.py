"""The search space: a small YAML file mapping fit.py options to ranges or choices.

Example (``configs/search/*.yaml``)::

    model.hidden_size: {low: 16, high: 128, log: true}   # integers: both bounds are integers
    model.dropout: {low: 0.0, high: 0.5}                 # floats
    optimizer.lr: {low: 1.0e-4, high: 1.0e-1, log: true}
    model.pooling: {choices: [final_state, mean, max]}

Keys are the options of ``scripts/fit.py`` without the leading ``--`` (``model.*``, ``data.*``,
``trainer.*``, ``optimizer.*``). A range is ``{low, high}`` with optional ``log: true`` or
``step``; integers when both bounds are integers (or ``type: int``), floats otherwise. Choices
may be any YAML values, lists included (e.g. layer widths).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from bigru_lightning.errors import UserInputError

RANGE_KEYS = {"low", "high", "log", "step", "type"}
SCALAR_TYPES = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Dimension:
    """One searched option: a numeric range or a list of choices."""

    option: str
    low: float | None = None
    high: float | None = None
    integer: bool = False
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Draw this option's value for ``trial``."""
        if self.choices:
            if all(isinstance(choice, SCALAR_TYPES) for choice in self.choices):
                return trial.suggest_categorical(self.option, list(self.choices))
            # Optuna's categorical values are scalars: lists travel as their JSON text.
            encoded = trial.suggest_categorical(self.option, [json.dumps(choice) for choice in self.choices])
            return json.loads(str(encoded))
        assert self.low is not None and self.high is not None
        if self.integer:
            step = int(self.step) if self.step is not None else 1
            return trial.suggest_int(self.option, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(self.option, self.low, self.high, step=self.step, log=self.log)

    def example(self) -> Any:
        """A value inside the space (the low end or first choice), to check the option is accepted."""
        if self.choices:
            return self.choices[0]
        return int(self.low) if self.integer and self.low is not None else self.low


@dataclass(frozen=True)
class SearchSpace:
    """The searched options, read from a YAML file."""

    path: str
    dimensions: tuple[Dimension, ...]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw one value per option for ``trial``."""
        return {dimension.option: dimension.suggest(trial) for dimension in self.dimensions}

    def examples(self) -> dict[str, Any]:
        """One value per option, inside the space."""
        return {dimension.option: dimension.example() for dimension in self.dimensions}


def option_args(values: dict[str, Any]) -> list[str]:
    """``{"model.hidden_size": 64}`` as fit.py arguments: ``["--model.hidden_size=64"]``."""
    return [f"--{option}={value if isinstance(value, str) else json.dumps(value)}" for option, value in values.items()]


def load_search_space(path: str) -> SearchSpace:
    """Read and check the search space file ``path`` (see the module docstring for its format)."""
    where = f"--search_space {path}"
    file = Path(path)
    if not file.is_file():
        raise UserInputError(f"{where}: no such file")
    try:
        content = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserInputError(f"{where}: not valid YAML ({type(error).__name__})") from error
    if not isinstance(content, dict) or not content:
        raise UserInputError(f"{where}: expected a mapping of fit.py options to ranges or choices, got {content!r}")
    return SearchSpace(path, tuple(_dimension(where, str(option), spec) for option, spec in content.items()))


def _dimension(where: str, option: str, spec: Any) -> Dimension:
    where = f"{where}: {option}"
    option = option.removeprefix("--")
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise UserInputError(f"{where}: expected {{low, high}} or {{choices: [...]}}, got {spec!r}")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise UserInputError(f"{where}: choices must be a non-empty list and come alone, got {spec!r}")
        return Dimension(option, choices=tuple(choices))
    unknown = set(spec) - RANGE_KEYS
    if unknown or not {"low", "high"} <= set(spec):
        raise UserInputError(
            f"{where}: a range takes low, high and optionally log, step, type (int|float); got {sorted(spec)}"
        )
    low, high = spec["low"], spec["high"]
    for name, bound in (("low", low), ("high", high)):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise UserInputError(f"{where}: {name} must be a number, got {bound!r}")
    if low > high:
        raise UserInputError(f"{where}: low {low} is greater than high {high}")
    kind = spec.get("type", "int" if isinstance(low, int) and isinstance(high, int) else "float")
    if kind not in ("int", "float"):
        raise UserInputError(f"{where}: type must be int or float, got {kind!r}")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise UserInputError(f"{where}: a log range needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0 or log):
        raise UserInputError(f"{where}: step must be a positive number (and not with log), got {step!r}")
    return Dimension(option, low=float(low), high=float(high), integer=kind == "int", log=log, step=step)
