"""The Trainer's fixed cost per hook call, trimmed where Lightning leaves a choice.

Lightning runs every hook of every callback and of the module inside ``trainer.profiler.profile(...)``,
about 70 times per training step. With no profiler chosen that is Lightning's ``PassThroughProfiler``,
whose ``profile`` is a generator-based context manager (about 1.4 us per use on the 2-core VM). The
:class:`NullProfiler` here does the same nothing with a plain ``nullcontext`` (about 0.3 us). A
profiler the user asks for (``--trainer.profiler simple``, ``advanced``, ``pytorch``) is left alone.
See ``docs/performance.md`` for what the rest of the Trainer's per-step cost is.
"""

from __future__ import annotations

import contextlib
from typing import Any, cast

import lightning.pytorch as pl
from lightning.pytorch.profilers import PassThroughProfiler


class NullProfiler(PassThroughProfiler):
    """Lightning's default "no profiler", with a context manager that costs less per hook call."""

    def profile(self, action_name: str) -> contextlib.nullcontext[str]:  # type: ignore[override]
        """A context that records nothing (it gives ``action_name`` on entry, as Lightning's does)."""
        return contextlib.nullcontext(action_name)


def use_null_profiler(trainer: pl.Trainer) -> None:
    """Give ``trainer`` a :class:`NullProfiler` if it has Lightning's default pass-through one."""
    holder = cast(Any, trainer)  # Trainer.profiler is set in __init__ without a declared type
    if type(holder.profiler) is PassThroughProfiler:
        holder.profiler = NullProfiler()
