"""Capacity planning (pure): GPUs for a peak request rate and cost per output token, per target.

From one run's stages: each target's highest request rate within the SLO on one replica
(interpolated as in the comparison), replicas = ceil(peak / (rate × (1 − headroom))), and
cost per million output tokens = GPU-hour cost / (output tok/s at that rate × 3600) × 10⁶.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from analysis.capacity import Capacity, capacities, slo_text
from analysis.config import SloConfig
from analysis.energy_plan import EnergyAtLimit, energy_at_limit
from analysis.repeats import by_load
from analysis.search_view import Search, with_searches
from loadtest.config import parse_duration

__all__ = [
    "Plan",
    "PlanInputError",
    "PlanInputs",
    "TargetPlan",
    "cost_per_million_tokens",
    "exclude",
    "make_plan",
    "parse_number",
    "parse_slo",
    "plan_inputs",
    "replicas_needed",
]

_SLO_KEY = re.compile(r"^(ttft|tpot|e2e)_p(\d+(?:\.\d+)?)$")
_SLO_EXAMPLE = "write e.g. ttft_p95=500ms,tpot_p99=50ms"
_NUMBER = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(%)?$")


class PlanInputError(ValueError):
    """A plan flag that cannot be used (names the flag and what is allowed)."""


class PlanInputs(BaseModel):
    """What a plan is for: the SLO, the peak to serve, the GPU price and the spare capacity.

    `slo` None means the run's own config SLO (filled in by `resolved`).
    """

    model_config = ConfigDict(extra="forbid")

    slo: SloConfig | None = None
    peak_rps: float | None = Field(default=None, gt=0)
    gpu_hour_cost: float | None = Field(default=None, gt=0)
    headroom: float = Field(default=0.2, ge=0, lt=1)
    max_ppl_increase: float | None = Field(default=None, ge=0, lt=1)  # the accuracy bar
    kwh_cost: float | None = Field(default=None, gt=0)  # electricity, per kWh
    # `--growth N`: the peak is N × the replayed trace's own mean rate (peak_rps holds it)
    growth: float | None = Field(default=None, gt=0)
    source: Literal["quantbench plan", "config"] = "quantbench plan"

    def resolved(self, config_slo: SloConfig, kwh_cost: float | None = None) -> PlanInputs:
        """With the config's SLO and electricity price (`analysis.kwh_cost`) where unset."""
        update: dict[str, Any] = {}
        if self.slo is None:
            update["slo"] = config_slo
        if self.kwh_cost is None and kwh_cost is not None:
            update["kwh_cost"] = kwh_cost
        return self.model_copy(update=update) if update else self

    @property
    def objectives(self) -> SloConfig:
        return self.slo if self.slo is not None else SloConfig()


@dataclass(frozen=True)
class TargetPlan:
    """One target's plan. `lower_bound`: every stage met the SLO, so the real rate per
    replica is higher and `replicas` an upper bound."""

    target: str
    stack: str
    quant: str
    simulated: bool
    capacity: Capacity
    replicas: int | None
    cost_per_million_tokens: float | None
    energy: EnergyAtLimit | None = None  # GPU energy at the SLO limit (analysis/energy_plan)

    @property
    def max_rps(self) -> float | None:
        return self.capacity.req_per_s if self.capacity.sustains else None

    @property
    def output_tok_per_s(self) -> float | None:
        return self.capacity.output_tok_per_s if self.capacity.sustains else None

    @property
    def lower_bound(self) -> bool:
        return self.capacity.lower_bound

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "stack": self.stack,
            "quant": self.quant,
            "simulated": self.simulated,
            "max_rps_per_replica": self.max_rps,
            "max_rps_is_lower_bound": self.lower_bound,
            "output_tok_per_s_at_max": self.output_tok_per_s,
            "replicas": self.replicas,
            "cost_per_million_output_tokens": self.cost_per_million_tokens,
            "capacity": self.capacity.to_json(),
            "energy": self.energy.to_json() if self.energy is not None else None,
        }


@dataclass(frozen=True)
class Plan:
    """`excluded`: targets an accuracy bar (`accuracy_bar`, a perplexity increase over FP16)
    rules out, with why; `cheapest` is chosen among the others."""

    inputs: PlanInputs
    targets: list[TargetPlan]
    cheapest: str | None
    accuracy_bar: float | None = None
    excluded: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs.model_dump(mode="json"),
            "slo": slo_text(self.inputs.objectives),
            "cheapest": self.cheapest,
            "accuracy_bar": self.accuracy_bar,
            "excluded_by_accuracy_bar": self.excluded,
            "targets": [
                {**target.to_json(), "excluded_by_accuracy_bar": self.excluded.get(target.target)}
                for target in self.targets
            ],
        }

    def target(self, name: str) -> TargetPlan | None:
        return next((t for t in self.targets if t.target == name), None)


def _limit_ms(key: str, value: str) -> float:
    """A duration in the config's grammar (`500ms`, `0.5s`, `1m`), with its unit required:
    a bare number would be seconds there and milliseconds in `slo:`, so it is refused."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = None
    if value.startswith("-"):
        raise PlanInputError(f"--slo: {key}={value!r} is not a positive duration")
    if not isinstance(seconds, float) or not re.search(r"[a-z]\s*$", value):
        raise PlanInputError(
            f"--slo: {key}={value!r} is not a duration with a unit; write e.g. 500ms or 0.5s"
        )
    if seconds <= 0:
        raise PlanInputError(f"--slo: {key}={value!r} is not a positive duration")
    return seconds * 1000.0


def parse_slo(text: str) -> SloConfig:
    """`ttft_p95=500ms,tpot_p99=50ms` → SloConfig: any percentile of TTFT, TPOT or E2E,
    durations as in bench.yaml (`500ms`, `0.5s`, `1m`). Only the objectives given apply."""
    limits: dict[str, tuple[float, float]] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = (piece.strip().lower() for piece in part.partition("="))
        if not sep:
            raise PlanInputError(f"--slo: {part.strip()!r} is not KEY=VALUE; {_SLO_EXAMPLE}")
        match = _SLO_KEY.match(key)
        if not match or not 0 < float(match.group(2)) < 100:
            raise PlanInputError(
                f"--slo: unknown objective {key!r}; use ttft_pN, tpot_pN or e2e_pN with a "
                f"percentile N between 0 and 100 (e.g. ttft_p95, tpot_p99, e2e_p99.9)"
            )
        metric, percentile = match.group(1), float(match.group(2))
        if metric in limits:
            raise PlanInputError(f"--slo: {metric.upper()} is given twice")
        limits[metric] = (_limit_ms(key, value), percentile)
    if not limits:
        raise PlanInputError(f"--slo: no objective given; {_SLO_EXAMPLE}")
    fields: dict[str, float | None] = {}
    for metric in ("ttft", "tpot", "e2e"):
        given = limits.get(metric)
        fields[f"{metric}_ms"] = given[0] if given else None
        fields[f"{metric}_percentile"] = given[1] if given else None
    return SloConfig.model_validate(fields)


def parse_number(flag: str, text: str, *, percent: bool = False, example: str = "40") -> float:
    """A non-negative number from a flag (`40`, `2.5`; `20%` when `percent`), else one error
    whose example is a plausible value of that flag."""
    match = _NUMBER.match(text.strip())
    if not match or (match.group(2) and not percent):
        allowed = (
            "a number ≥ 0 such as 0.2 or 20%" if percent else f"a number ≥ 0 such as {example}"
        )
        raise PlanInputError(f"{flag}: {text!r} is not {allowed}")
    value = float(match.group(1))
    return value / 100.0 if match.group(2) else value


def plan_inputs(**values: Any) -> PlanInputs:
    """PlanInputs from flag values, with a one-line PlanInputError instead of a traceback."""
    try:
        return PlanInputs(**values)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-")
        raise PlanInputError(f"{flag}: {first['msg'].lower()}") from exc


def replicas_needed(peak_rps: float, max_rps: float, headroom: float) -> int:
    """GPUs so that each runs at most (1 − headroom) of its SLO-limited rate at the peak."""
    usable = max_rps * (1.0 - headroom)
    if usable <= 0:
        raise ValueError("a replica that sustains no load cannot serve a peak")
    return max(math.ceil(peak_rps / usable - 1e-9), 1)


def cost_per_million_tokens(gpu_hour_cost: float, output_tok_per_s: float) -> float:
    """What a million output tokens cost on one GPU running at `output_tok_per_s`."""
    return gpu_hour_cost / (output_tok_per_s * 3600.0) * 1e6


def _target_plan(
    row: pd.Series, cap: Capacity, inputs: PlanInputs, energy: EnergyAtLimit | None = None
) -> TargetPlan:
    replicas = cost = None
    if cap.sustains and cap.req_per_s and cap.req_per_s > 0 and inputs.peak_rps:
        replicas = replicas_needed(inputs.peak_rps, cap.req_per_s, inputs.headroom)
    if cap.sustains and cap.output_tok_per_s and cap.output_tok_per_s > 0 and inputs.gpu_hour_cost:
        cost = cost_per_million_tokens(inputs.gpu_hour_cost, cap.output_tok_per_s)
    return TargetPlan(
        str(row["target"]),
        str(row["stack"]),
        str(row["quant"]),
        bool(row["simulated"]),
        cap,
        replicas,
        cost,
        energy,
    )


def _cheapest(targets: list[TargetPlan]) -> str | None:
    """Lowest cost per output token: the most output tok/s per GPU within the SLO (the same
    order whatever the GPU-hour price); ties go to fewer replicas, then run order."""
    usable = [t for t in targets if t.output_tok_per_s and t.output_tok_per_s > 0]
    if not usable:
        return None
    best = min(usable, key=lambda t: (-(t.output_tok_per_s or 0.0), t.replicas or 0))
    return best.target


def exclude(plan: Plan, bar: float, excluded: dict[str, str]) -> Plan:
    """The plan with the targets an accuracy bar rules out set aside (each with why): the
    cheapest is chosen among the rest."""
    kept = [t for t in plan.targets if t.target not in excluded]
    return replace(plan, cheapest=_cheapest(kept), accuracy_bar=bar, excluded=dict(excluded))


def make_plan(
    summary: pd.DataFrame, inputs: PlanInputs, searches: Mapping[str, Search] | None = None
) -> Plan:
    """The plan for every target of a run's summary, under `inputs.slo` (repeats folded).
    `searches`: a search run's answers, used as each target's capacity (they hold for the
    SLO they searched with only: the caller passes them when it is `inputs.objectives`)."""
    per_load = by_load(summary)
    caps = with_searches(capacities(per_load, inputs.objectives), per_load, searches)
    firsts = summary.drop_duplicates("target") if len(summary) else summary
    targets = []
    for _, row in firsts.iterrows():
        name = str(row["target"])
        mine = per_load[per_load["target"] == name]
        energy = energy_at_limit(mine, caps[name], inputs.kwh_cost)
        targets.append(_target_plan(row, caps[name], inputs, energy))
    return Plan(inputs, targets, _cheapest(targets))
