"""Whether a stage meets an SLO, judged from running counts (pure, cheap in every generator).

An objective "the q-quantile of a latency is at most `limit_ms`" is a statement about the
share of requests over the limit, so a stage needs only, per objective, how many values it
has seen and how many were over: additive counts that generator processes can send to their
master. The q-quantile lies wholly below the limit when even the upper end of its
distribution-free interval does (the order statistic at rank `high`, as `analysis.stats`
reports it), wholly above when the lower end does (`loadtest.order_stats`).

A stage is looked at again and again while it runs, so an early decision asks for a wider
interval (`Z_EARLY`, 3σ) than the 95% one of the report; one decided at its end takes the
point estimate, as the report's percentile does. Latencies are those of `ok` requests, and
the error rate is held to its validity limit, as the analysis' SLO check does
(`analysis.capacity.stage_meets`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from loadtest.order_stats import min_samples, ranks

__all__ = ["EARLY_MIN_DONE", "Z_EARLY", "Limit", "Tally", "Verdict", "judge"]

Verdict = Literal["met", "broken"]
Z_EARLY = 3.0
EARLY_MIN_DONE = 20  # below this many ended requests nothing is decided early


@dataclass(frozen=True)
class Limit:
    """One objective: the `quantile` (0–1) of `metric` (`ttft`, `tpot`, `e2e`) ≤ `limit_ms`."""

    metric: str
    quantile: float
    limit_ms: float


@dataclass(frozen=True)
class Tally:
    """A stage's measured requests: `ok`, `failed`, and per objective (in `Limit` order) how
    many ok requests had the figure (`seen`) and how many of those were over its limit."""

    ok: int = 0
    failed: int = 0
    seen: tuple[int, ...] = ()
    over: tuple[int, ...] = ()

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.ok + other.ok,
            self.failed + other.failed,
            _sum(self.seen, other.seen),
            _sum(self.over, other.over),
        )

    @classmethod
    def of(cls, ok: bool, figures: Sequence[float | None], limits: Sequence[Limit]) -> Tally:
        """One request: `figures` are its values of each limit's metric (None: undefined)."""
        if not ok:
            return cls(0, 1, (0,) * len(limits), (0,) * len(limits))
        seen = tuple(int(v is not None) for v in figures)
        pairs = zip(figures, limits, strict=True)
        over = tuple(int(v is not None and v > lim.limit_ms) for v, lim in pairs)
        return cls(1, 0, seen, over)

    def to_list(self) -> list[int]:
        return [self.ok, self.failed, len(self.seen), *self.seen, *self.over]

    @classmethod
    def from_list(cls, data: Sequence[int]) -> Tally:
        ok, failed, k = int(data[0]), int(data[1]), int(data[2]) if len(data) > 2 else 0
        return cls(ok, failed, tuple(data[3 : 3 + k]), tuple(data[3 + k : 3 + 2 * k]))


def _sum(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    if not a or not b:
        return a or b
    return tuple(x + y for x, y in zip(a, b, strict=True))


def _objective(n: int, over: int, q: float, early: bool) -> Verdict | None:
    """One objective: decided by its interval (early) or its point estimate (at the end)."""
    if n == 0 or (n < min_samples(q) and not (early and n >= EARLY_MIN_DONE)):
        return None
    within = n - over  # values at or under the limit
    r = ranks(n, q, Z_EARLY if early else None)
    if within <= r.low:
        return "broken"  # even the interval's lower end is over the limit
    if early:
        return "met" if n >= min_samples(q) and within >= r.high + 1 else None
    return "met" if within >= r.above + 1 else "broken"


def _errors(ok: int, failed: int, max_error_rate: float, early: bool) -> Verdict | None:
    done = ok + failed
    if done == 0:
        return None
    if not early:
        return "met" if failed <= max_error_rate * done else "broken"
    spread = Z_EARLY * math.sqrt(done * max_error_rate * (1 - max_error_rate))
    if done >= EARLY_MIN_DONE and failed > max_error_rate * done + max(spread, 1.0):
        return "broken"
    return "met"  # not broken yet; the end decides on the point estimate


def judge(
    tally: Tally, limits: Sequence[Limit], max_error_rate: float, *, early: bool
) -> Verdict | None:
    """`broken` as soon as one objective (or the error rate) is; `met` when all are; None
    while undecided (early), or at the end when an objective has too few samples."""
    verdicts = [_errors(tally.ok, tally.failed, max_error_rate, early)]
    for i, limit in enumerate(limits):
        n = tally.seen[i] if i < len(tally.seen) else 0
        over = tally.over[i] if i < len(tally.over) else 0
        verdicts.append(_objective(n, over, limit.quantile, early))
    if "broken" in verdicts:
        return "broken"
    if all(v == "met" for v in verdicts):
        return "met"
    return None
