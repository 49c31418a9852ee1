"""`load.mode: search` as a pure state machine: which rate to probe next, and the answer.

Bracketing then bisection on the open-loop rate: from `start`, each stage that meets the SLO
multiplies the rate by `growth`, each that breaks it divides it, until one met and one broken
stage bracket the limit; then the middle of the bracket is probed until its half-width is at
most `precision` of its middle (the answer is that middle, ± the half-width). Every stage
measured is reused: the bracket is always the highest met rate below the lowest broken one
(a later stage that contradicts an earlier one, which bisection alone never probes, is trusted
over it). A stage with no verdict (too few samples) counts as broken: the answer is never
above a rate that was not shown to hold.

Each probed stage's line goes to `search.jsonl` as it is decided (`SearchStep`), so the path
survives a killed run and the analysis replays it (`replay`) for the report and the plan.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from loadtest.config import SearchConfig
from loadtest.slo_counts import Verdict

__all__ = ["SEARCH_FILE", "Answer", "Bracket", "RateSearch", "SearchStep", "replay"]

SEARCH_FILE = "search.jsonl"

AnswerStatus = Literal["found", "above_max", "below_min", "unfinished"]


class SearchStep(BaseModel):
    """One probed stage of a target's search, as `search.jsonl` keeps it. `verdict` None: the
    stage had too few samples to judge (counted as broken); `early`: decided before its
    duration; `ok`, `failed`, `over` (per objective) are the counts it was judged on."""

    model_config = ConfigDict(extra="forbid")

    target: str
    step: int
    stage: int
    rate: float
    verdict: Verdict | None
    early: bool = False
    ok: int = 0
    failed: int = 0
    over: list[int] = []
    low: float | None = None  # the bracket after this step
    high: float | None = None
    max_rate: float | None = None  # the highest rate the search could offer (None: max_rate)
    behind: bool = False  # the generator fell behind its schedule: a limit of the generator


@dataclass(frozen=True)
class Answer:
    """`found`: the limit is `rate` ± `half_width` (between `low` met and `high` broken);
    `above_max`: even `max_rate` (`low`) met the SLO; `below_min`: even `min_rate` (`high`)
    broke it; `unfinished`: `max_stages` ran out, the bracket is what is known."""

    status: AnswerStatus
    low: float | None
    high: float | None
    precision: float
    why: str = ""  # `above_max`: what set the highest rate; `unfinished`: why it stopped

    @property
    def rate(self) -> float | None:
        if self.status == "found" and self.low is not None and self.high is not None:
            return (self.low + self.high) / 2
        return self.low if self.status in ("above_max", "unfinished") else None

    @property
    def half_width(self) -> float | None:
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2

    def text(self) -> str:
        if self.status == "found" and self.rate is not None:
            assert self.half_width is not None and self.low is not None and self.high is not None
            return (
                f"{self.rate:.3g} ± {self.half_width:.2g} req/s (met at {self.low:.3g}, "
                f"broken at {self.high:.3g}; precision ±{self.precision:.0%})"
            )
        if self.status == "above_max":
            return f"at least {self.low:g} req/s (the SLO held at {self.why})"
        if self.status == "below_min":
            return f"below {self.high:g} req/s (the SLO broke at load.search.min_rate)"
        low = "none met" if self.low is None else f"met at {self.low:.3g}"
        high = "none broke" if self.high is None else f"broken at {self.high:.3g}"
        return f"not narrowed to ±{self.precision:.0%} ({self.why}): {low}, {high} req/s"


class RateSearch:
    """Feed it each probed stage's verdict (`record`); `next_rate()` is None once decided."""

    def __init__(self, config: SearchConfig, ceiling: float | None = None) -> None:
        """`ceiling`: a rate the generator cannot time accurately beyond (lowers max_rate)."""
        self.config = config
        self.max_rate = config.max_rate if ceiling is None else min(config.max_rate, ceiling)
        self.max_why = (
            "load.search.max_rate"
            if self.max_rate == config.max_rate
            else "the highest rate the generator times accurately; more load.processes go higher"
        )
        self.min_rate = min(config.min_rate, self.max_rate)
        self.behind_at: float | None = None  # lowest rate the generator fell behind at
        self._met: list[float] = []
        self._broken: list[float] = []
        self.steps = 0

    @property
    def low(self) -> float | None:
        return max(self._met, default=None)

    @property
    def high(self) -> float | None:
        return min(self._broken, default=None)

    def record_behind(self, rate: float) -> None:
        """The generator could not keep this rate's schedule: no verdict on the target, and
        no higher rate is offered (the search narrows the generator's limit instead)."""
        self.steps += 1
        self.behind_at = rate if self.behind_at is None else min(self.behind_at, rate)
        self._met = [r for r in self._met if r < rate]

    def record_step(self, step: SearchStep, trusted: bool = True) -> None:
        """A step of search.jsonl (`trusted` False: its verdict is taken as none)."""
        if step.behind:
            self.record_behind(step.rate)
        else:
            self.record(step.rate, step.verdict if trusted else None)

    def record(self, rate: float, verdict: Verdict | None) -> None:
        self.steps += 1
        if verdict == "met":
            self._broken = [r for r in self._broken if r > rate]
            self._met.append(rate)
        else:
            self._met = [r for r in self._met if r < rate]
            self._broken.append(rate)

    def _converged(self, low: float, high: float) -> bool:
        return (high - low) / 2 <= self.config.precision * (high + low) / 2

    def next_rate(self) -> float | None:
        if self.answer().status != "unfinished" or self.steps >= self.config.max_stages:
            return None
        low, high, growth = self.low, self.high, self.config.growth
        if low is None and high is None:
            return min(max(self.config.start, self.min_rate), self.max_rate)
        if high is None:
            assert low is not None
            if self.behind_at is not None and low * growth >= self.behind_at:
                return (low + self.behind_at) / 2
            return min(low * growth, self.max_rate)
        if low is None:
            return max(high / growth, self.min_rate)
        return (low + high) / 2

    def answer(self) -> Answer:
        low, high, precision = self.low, self.high, self.config.precision
        if low is not None and high is not None and self._converged(low, high):
            return Answer("found", low, high, precision)
        if high is None and low is not None and low >= self.max_rate:
            return Answer("above_max", low, None, precision, self.max_why)
        behind = self.behind_at
        if high is None and low is not None and behind is not None and self._converged(low, behind):
            why = (
                f"the highest rate the generator kept its schedule at: it fell behind at "
                f"{behind:.4g} req/s; more load.processes go higher"
            )
            return Answer("above_max", low, None, precision, why)
        if low is None and high is not None and high <= self.min_rate:
            return Answer("below_min", None, high, precision)
        why = "load.search.max_stages ran out" if self.steps >= self.config.max_stages else ""
        return Answer("unfinished", low, high, precision, why or "the search stopped here")


def ceiling(steps: list[SearchStep]) -> float | None:
    return min((s.max_rate for s in steps if s.max_rate is not None), default=None)


Bracket = tuple[float | None, float | None]


def replay(
    steps: list[SearchStep], config: SearchConfig, untrusted: Collection[int] = ()
) -> tuple[RateSearch, list[Bracket]]:
    """A target's search rebuilt from its recorded steps (in order), a stage in `untrusted`
    taken as having no verdict; with the bracket (low, high) after each step."""
    search = RateSearch(config, ceiling=ceiling(steps))
    brackets: list[Bracket] = []
    for step in sorted(steps, key=lambda s: s.step):
        search.record_step(step, trusted=step.stage not in untrusted)
        brackets.append((search.low, search.high))
    return search, brackets
