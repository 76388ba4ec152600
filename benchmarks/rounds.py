"""Interleaved rounds and their summary: the median of per-round ratios, its range, and whether to trust it.

Every benchmark in this folder runs its contestants in rounds, each round in a rotated order, so a load
change on a shared machine hits every contestant alike; a ratio is taken within each round, then the
median over the rounds is quoted with its range. When the range is wide compared with the median (or
there are fewer than :data:`MIN_ROUNDS` rounds) the summary says that the median is not to be trusted.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

MIN_ROUNDS = 5
"""Fewer rounds than this: the median is reported but marked as not to be trusted."""
MAX_RELATIVE_RANGE = 0.10
"""A range (max - min) wider than this share of the median: the median is marked as not to be trusted."""

T = TypeVar("T")


def rotated(names: Sequence[T], round_index: int) -> list[T]:
    """``names`` rotated by ``round_index`` places: each contestant takes each position in turn."""
    if not names:
        return []
    shift = round_index % len(names)
    return [*names[shift:], *names[:shift]]


@dataclass(frozen=True)
class Summary:
    """The median of one quantity over interleaved rounds, with its range.

    Attributes:
        median: Median over the rounds.
        low: Smallest value of a round.
        high: Largest value of a round.
        rounds: Number of rounds.
        trusted: At least :data:`MIN_ROUNDS` rounds and a range within :data:`MAX_RELATIVE_RANGE` of the median.
    """

    median: float
    low: float
    high: float
    rounds: int
    trusted: bool

    @property
    def relative_range(self) -> float:
        """``(high - low) / median`` (infinite for a zero median)."""
        return (self.high - self.low) / abs(self.median) if self.median else float("inf")

    def describe(self, digits: int = 3, unit: str = "") -> str:
        """``1.012 (range 0.950-1.050, 5 rounds)``, plus a warning when the median is not to be trusted."""
        text = (
            f"{self.median:,.{digits}f}{unit} (range {self.low:,.{digits}f}-{self.high:,.{digits}f}, "
            f"{self.rounds} rounds)"
        )
        if self.rounds < MIN_ROUNDS:
            text += f"  [fewer than {MIN_ROUNDS} rounds: do not trust the median]"
        elif not self.trusted:
            text += (
                f"  [range {100 * self.relative_range:.0f}% of the median, over {100 * MAX_RELATIVE_RANGE:.0f}%: "
                "too wide to trust the median; rerun on a quieter machine or with more rounds]"
            )
        return text

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON, with the relative range."""
        return {**asdict(self), "relative_range": self.relative_range}


def summarise(values: Sequence[float]) -> Summary:
    """Median and range of per-round ``values`` (at least one)."""
    if not values:
        raise ValueError("summarise needs at least one value")
    median = float(statistics.median(values))
    low, high = float(min(values)), float(max(values))
    relative = (high - low) / abs(median) if median else float("inf")
    return Summary(median, low, high, len(values), len(values) >= MIN_ROUNDS and relative <= MAX_RELATIVE_RANGE)
