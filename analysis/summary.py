"""Per target × stage figures: the rows of summary.csv and each stage's validity.

One definition of a stage's requests everywhere (MEASUREMENT.md, README "What the numbers
mean"): the requests it *scheduled* after its warm-up (records with its `stage` and
`warmup: false`). Percentiles, counts, error rate, throughput and goodput all rest on exactly
those; throughput divides their completed count (or tokens) by the measured window, which in
steady state equals the finishing rate without counting the previous stage's stragglers.
Records are grouped once (never filtered per stage) so a million-record run stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.config import DEFAULT_PERCENTILES, AnalysisConfig, SloConfig, percentile_word
from analysis.errors import BREAKDOWN_COLUMNS, error_breakdown, failure_text
from analysis.gpu_stages import TELEMETRY_COLUMNS, TELEMETRY_COUNTS
from analysis.stats import Quantile, quantiles
from analysis.validity import StageEvidence, invalid_reasons
from loadtest.generator_stats import LOOP_LATE_MS
from loadtest.records import StageRecord

__all__ = [
    "STAT_METRICS",
    "SUMMARY_COLUMNS",
    "FailureCost",
    "TargetInfo",
    "report_percentiles",
    "stat_column",
    "summarize",
    "summary_columns",
    "with_integer_counts",
]

STAT_METRICS: dict[str, tuple[str, ...]] = {
    "": ("ttft", "tpot", "itl", "e2e"),  # ok requests only
    "_all": ("ttft", "e2e"),  # every request, failures at their timeout
}


def stat_column(metric: str, scope: str, part: str) -> str:
    """Column name of one statistic: part is `n`, `mean`, `std`, `p95` (value), `p95_lo`,
    `p95_hi` or `p99.9`."""
    if part == "n":
        return f"{metric}{scope}_n"
    p, _, bound = part.rpartition("_") if part.endswith(("_lo", "_hi")) else (part, "", "")
    return f"{metric}_{p}{scope}{'_' + bound if bound else ''}_ms"


_BASE_COLUMNS = [
    "target",
    "stack",
    "quant",
    "simulated",
    "stage",
    "mode",
    "load",
    "requests",
    "ok",
    "errors",
    "duration_s",
    "req_per_s",
    "output_tok_per_s",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "ttft_p99_ms",
    "tpot_p50_ms",
    "tpot_p95_ms",
    "itl_p50_ms",
    "itl_p95_ms",
    "e2e_p50_ms",
    "e2e_p95_ms",
    "ttft_p95_all_ms",
    "e2e_p95_all_ms",
    "schedule_lag_p99_ms",
    "goodput_req_per_s",
    "valid",
    "invalid_reason",
]

_EXTRA_COLUMNS = [
    "repeat",
    "error_rate",
    "error_breakdown",  # `connect_error × 120; http_error 503 × 3`
    "loop_lag_p99_ms",  # the generator's event loop (busiest process): how late it woke
    "read_lag_p99_ms",  # how long kernel-stamped bytes waited for the generator to read them
    "input_tok_per_s",
    "total_tok_per_s",
    "input_tokens",  # totals over the stage's ok requests
    "output_tokens",
    "output_tokens_mean",
    "tpot_undefined",
]


def report_percentiles(limits: AnalysisConfig, *slos: SloConfig | None) -> list[float]:
    """The percentiles summary.csv holds: the defaults, `analysis.percentiles` and every
    percentile an SLO names (so `plan --slo ttft_p99=…` finds its column)."""
    found = set(DEFAULT_PERCENTILES) | set(limits.percentiles)
    for slo in slos:
        if slo is not None:
            found |= slo.percentiles()
    return sorted(found)


def _stat_parts(percentiles: Iterable[float]) -> list[str]:
    parts = ["mean", "std"]
    for p in percentiles:
        word = f"p{percentile_word(p)}"
        parts += [word, f"{word}_lo", f"{word}_hi"]
    return parts


def summary_columns(percentiles: Iterable[float] = DEFAULT_PERCENTILES) -> list[str]:
    """summary.csv's columns: DESIGN.md's first, then the extras, then every statistic, then
    the GPU and container figures (filled by `analysis.gpu_stages.add_telemetry_columns`)."""
    names = []
    for scope, metrics in STAT_METRICS.items():
        for metric in metrics:
            names.append(stat_column(metric, scope, "n"))
            names += [stat_column(metric, scope, part) for part in _stat_parts(percentiles)]
    seen = set(_BASE_COLUMNS) | set(_EXTRA_COLUMNS)
    stats = [n for n in names if n not in seen]
    return [*_BASE_COLUMNS, *_EXTRA_COLUMNS, *stats, *TELEMETRY_COLUMNS]


SUMMARY_COLUMNS = summary_columns()

_COUNT_COLUMNS = frozenset(
    {
        "stage",
        "repeat",
        "requests",
        "ok",
        "errors",
        "input_tokens",
        "output_tokens",
        "tpot_undefined",
        *TELEMETRY_COUNTS,
        *(stat_column(m, scope, "n") for scope, ms in STAT_METRICS.items() for m in ms),
    }
)


def with_integer_counts(summary: pd.DataFrame) -> pd.DataFrame:
    """`summary` with its count columns as integers, pandas' nullable `Int64` (empty where a
    row has none), so summary.csv writes `12161`, never `12161.000` or `1.0`."""
    out = summary.copy()
    for column in _COUNT_COLUMNS.intersection(out.columns):
        out[column] = pd.to_numeric(out[column]).round().astype("Int64")
    return out


@dataclass(frozen=True)
class FailureCost:
    """What a failed request counts as in all-request percentiles: its timeouts (ms)."""

    ttft_ms: float
    e2e_ms: float


@dataclass(frozen=True)
class TargetInfo:
    name: str
    stack: str
    quant: str
    simulated: bool


def _floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    return np.asarray(pd.to_numeric(frame[column], errors="coerce"), dtype=float)


def _itl_lists(series: pd.Series) -> pa.ChunkedArray:
    """The ITL column as one Arrow list array, whether Arrow-backed or Python lists."""
    if isinstance(series.dtype, pd.ArrowDtype):
        arrow = pa.array(series.array)  # the __arrow_array__ protocol: no copy
        return arrow if isinstance(arrow, pa.ChunkedArray) else pa.chunked_array([arrow])
    values = [None if v is None else [float(x) for x in v] for v in series]
    return pa.chunked_array([pa.array(values, type=pa.list_(pa.float64()))])


class _Gaps:
    """Pooled ITL values of any set of rows, without copying the list column.

    A stage's rows are near each other in the file, so only the few Arrow chunks that hold
    them are touched; within a chunk, a row mask is widened to a value mask by row length.
    """

    def __init__(self, lists: pa.ChunkedArray) -> None:
        self._chunks = list(lists.chunks)
        lengths = [len(chunk) for chunk in self._chunks]
        self._starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._flat: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _chunk(self, number: int) -> tuple[np.ndarray, np.ndarray]:
        if number not in self._flat:
            chunk = self._chunks[number]
            values = pc.list_flatten(chunk).to_numpy(zero_copy_only=False)
            lengths = pc.list_value_length(chunk).fill_null(0).to_numpy(zero_copy_only=False)
            self._flat[number] = (np.asarray(values, dtype=float), lengths)
        return self._flat[number]

    def of(self, rows: np.ndarray) -> np.ndarray:
        rows = np.sort(rows)
        where = np.searchsorted(self._starts, rows, side="right") - 1
        parts = [np.empty(0)]
        for number in np.unique(where):
            values, lengths = self._chunk(int(number))
            mask = np.zeros(len(lengths), dtype=bool)
            mask[rows[where == number] - self._starts[number]] = True
            parts.append(values[np.repeat(mask, lengths)])
        return np.concatenate(parts)


class StageRequests:
    """The request frame as numpy columns, grouped once by (target, stage): each group is a
    stage's own requests (scheduled after its warm-up), the one definition every table uses."""

    def __init__(self, requests: pd.DataFrame, slo: SloConfig) -> None:
        codes, names = pd.factorize(requests["target"].astype(str), sort=False)
        self.targets = {str(name): index for index, name in enumerate(names)}
        self.code = codes
        self.stage = np.asarray(requests["stage"], dtype=np.int64)
        self.warmup = np.asarray(requests["warmup"].fillna(False), dtype=bool)
        self.outcome = np.asarray(requests["outcome"].astype(str), dtype=object)
        self.ok = self.outcome == "ok"
        self.tokens = _floats(requests, "output_tokens")
        self.prompt_tokens = _floats(requests, "prompt_tokens")
        self.values = {m: _floats(requests, f"{m}_ms") for m in ("ttft", "tpot", "e2e")}
        self.lag = _floats(requests, "schedule_lag_ms")
        self.read_lag = (
            _floats(requests, "read_lag_ms")
            if "read_lag_ms" in requests
            else np.full(len(requests), np.nan)
        )
        self.itl = _Gaps(_itl_lists(requests["itl_ms"]))
        self.meets = self._meets(slo)
        self._key_width = int(self.stage.max(initial=0)) + 1
        key = self.code.astype(np.int64) * self._key_width + self.stage
        measured = np.flatnonzero(~self.warmup)
        self.groups = _split(measured, key[measured])

    def _meets(self, slo: SloConfig) -> np.ndarray:
        met = self.ok.copy()
        for objective in slo.objectives():
            values = self.values[objective.metric]
            within = values <= objective.limit_ms
            if objective.metric == "tpot":
                within |= np.isnan(values)  # one output token: TPOT undefined, cannot violate
            met &= within
        return met

    def of(self, target: str, stage: int) -> np.ndarray:
        """Row numbers of the stage's own requests, in file order."""
        code = self.targets.get(target)
        if code is None:
            return np.empty(0, dtype=np.int64)
        return self.groups.get(code * self._key_width + stage, np.empty(0, dtype=np.int64))

    def metric(self, metric: str, rows: np.ndarray) -> np.ndarray:
        """`ttft`, `tpot`, `e2e` or `itl` (pooled gaps) of the given rows' ok requests."""
        ok = rows[self.ok[rows]]
        return self.itl.of(ok) if metric == "itl" else self.values[metric][ok]


def _split(index: np.ndarray, key: np.ndarray) -> dict[int, np.ndarray]:
    """Row indices grouped by key, each group in row order (one stable sort for all)."""
    if not len(key):
        return {}
    order = np.argsort(key, kind="stable")
    keys, starts = np.unique(key[order], return_index=True)
    parts = np.split(index[order], starts[1:])
    return {int(k): part for k, part in zip(keys, parts, strict=True)}


def _stats(
    row: dict[str, Any], metric: str, scope: str, values: np.ndarray, percentiles: list[float]
) -> None:
    found: list[Quantile] = quantiles(values, [p / 100 for p in percentiles])
    finite = values[np.isfinite(values)]
    row[stat_column(metric, scope, "n")] = found[0].n
    row[stat_column(metric, scope, "mean")] = float(finite.mean()) if len(finite) else None
    row[stat_column(metric, scope, "std")] = float(finite.std()) if len(finite) else None
    for p, q in zip(percentiles, found, strict=True):
        word = f"p{percentile_word(p)}"
        row[stat_column(metric, scope, word)] = q.value
        row[stat_column(metric, scope, f"{word}_lo")] = q.ci_low
        row[stat_column(metric, scope, f"{word}_hi")] = q.ci_high


def _generator_cpu(generator: pd.DataFrame, stage: StageRecord) -> float | None:
    """The busiest generator process's mean CPU over the stage's measured window."""
    if generator.empty:
        return None
    start = stage.start_wall_s + stage.warmup_s
    window = generator[(generator["wall_s"] >= start) & (generator["wall_s"] <= stage.end_wall_s)]
    if window.empty:
        return None
    return float(window.groupby("pid")["cpu_percent"].mean().max())


def _held_ms(rows: pd.DataFrame) -> np.ndarray:
    """The late ticks' lateness, each weighted by the process's CPU share over it: how long
    the generator's own work held its loop (a tick late while the process sat idle is the
    host not scheduling it, which the CPU share leaves out)."""
    parts = [np.empty(0)]
    for late, busy in zip(rows["loop_late_ms"], rows["loop_busy"], strict=True):
        if isinstance(late, list) and late:
            share = busy if isinstance(busy, list) and len(busy) == len(late) else 1.0
            parts.append(np.asarray(late, dtype=float) * np.asarray(share, dtype=float))
    return np.concatenate(parts)


def _loop_lag_p99(rows: pd.DataFrame) -> float:
    """One process's p99 of `_held_ms` over all its probe ticks: exact when more than 1% of
    the ticks were held past `LOOP_LATE_MS`, else that bound (the rest were not kept)."""
    ticks = int(rows["loop_ticks"].sum())
    held = np.sort(_held_ms(rows))
    beyond = math.ceil(ticks * 0.01)  # ticks at or above the p99
    if ticks <= 0 or len(held) < beyond:
        return LOOP_LATE_MS
    return max(float(held[len(held) - beyond]), LOOP_LATE_MS)


def _generator_lag(generator: pd.DataFrame, stage: StageRecord) -> float | None:
    """The busiest generator process's p99 event-loop lag of its own making over the measured
    window, or None where no process recorded its loop (runs from before the probe)."""
    if generator.empty or "loop_ticks" not in generator:
        return None
    start = stage.start_wall_s + stage.warmup_s
    window = generator[(generator["wall_s"] >= start) & (generator["wall_s"] <= stage.end_wall_s)]
    window = window[window["loop_ticks"].notna()]
    if window.empty:
        return None
    return max(_loop_lag_p99(rows) for _, rows in window.groupby("pid"))


def _sum(values: np.ndarray) -> float:
    return float(np.nansum(values)) if len(values) else 0.0


@dataclass(frozen=True)
class _Context:
    rec: StageRequests
    slo: SloConfig
    limits: AnalysisConfig
    cost: FailureCost
    generator: pd.DataFrame
    failures: Mapping[tuple[str, int], pd.DataFrame]
    restarts: Mapping[tuple[str, int], str]
    percentiles: list[float]
    containers: Mapping[tuple[str, int], str]


def _stage_row(stage: StageRecord, info: TargetInfo, ctx: _Context) -> dict[str, Any]:
    rec = ctx.rec
    measure_start_ns = stage.start_ns + int(stage.warmup_s * 1e9)
    duration_s = max((stage.end_ns - measure_start_ns) / 1e9, 1e-9)
    index = rec.of(stage.target, stage.stage)
    ok = index[rec.ok[index]]
    n, n_ok = len(index), len(ok)
    failed = ctx.failures.get((stage.target, stage.stage), pd.DataFrame(columns=BREAKDOWN_COLUMNS))
    lag = quantiles(rec.lag[index], [0.99])[0].value
    evidence = StageEvidence(
        mode=stage.mode,
        requests=n,
        ok=n_ok,
        failures=failed.groupby("outcome", sort=False)["count"].sum().to_dict(),
        completed=stage.completed,
        workers_lost=stage.workers_lost,
        restart=ctx.restarts.get((stage.target, stage.stage)),
        container=ctx.containers.get((stage.target, stage.stage)),
        schedule_lag_p99_ms=lag,
        generator_cpu_percent=_generator_cpu(ctx.generator, stage),
        loop_lag_p99_ms=_generator_lag(ctx.generator, stage),
        capped_s=stage.max_duration_s if stage.ended_by == "cap" else None,
        slo_early=stage.ended_by == "slo",
    )
    reasons = invalid_reasons(evidence, ctx.limits, ctx.slo)
    tokens, prompt = rec.tokens[ok], rec.prompt_tokens[ok]
    known_prompt = not n_ok or bool(np.isfinite(prompt).any())  # the server said, or nothing ran
    row: dict[str, Any] = {
        "target": info.name,
        "stack": info.stack,
        "quant": info.quant,
        "simulated": info.simulated,
        "stage": stage.stage,
        "repeat": stage.repeat,
        "mode": stage.mode,
        "load": stage.load,
        "requests": n,
        "ok": n_ok,
        "errors": n - n_ok,
        "error_rate": (n - n_ok) / n if n else 0.0,
        "error_breakdown": failure_text(failed),
        "duration_s": duration_s,
        "req_per_s": n_ok / duration_s,
        "output_tok_per_s": _sum(tokens) / duration_s,
        "input_tok_per_s": _sum(prompt) / duration_s if known_prompt else None,
        "total_tok_per_s": (_sum(tokens) + _sum(prompt)) / duration_s if known_prompt else None,
        "input_tokens": int(_sum(prompt)) if known_prompt else None,
        "output_tokens": int(_sum(tokens)),
        "schedule_lag_p99_ms": lag,
        "loop_lag_p99_ms": evidence.loop_lag_p99_ms,
        "read_lag_p99_ms": quantiles(rec.read_lag[index], [0.99])[0].value,
        "goodput_req_per_s": int(rec.meets[ok].sum()) / duration_s,
        "valid": not reasons,
        "invalid_reason": "; ".join(reasons),
        "output_tokens_mean": float(np.nanmean(tokens)) if n_ok else None,
        "tpot_undefined": int((tokens <= 1).sum()),
    }
    for metric in ("ttft", "tpot", "e2e", "itl"):
        _stats(row, metric, "", rec.metric(metric, index), ctx.percentiles)
    for metric, cost_ms in (("ttft", ctx.cost.ttft_ms), ("e2e", ctx.cost.e2e_ms)):
        failed_at = np.full(n - n_ok, cost_ms)  # so failing fast cannot look fast
        values = np.concatenate([rec.values[metric][ok], failed_at])
        _stats(row, metric, "_all", values, ctx.percentiles)
    return row


def summarize(
    requests: pd.DataFrame,
    stages: list[StageRecord],
    targets: dict[str, TargetInfo],
    slo: SloConfig,
    limits: AnalysisConfig | None = None,
    cost: FailureCost | None = None,
    generator: pd.DataFrame | None = None,
    *,
    restarts: Mapping[tuple[str, int], str] | None = None,
    breakdown: pd.DataFrame | None = None,
    percentiles: list[float] | None = None,
    records: StageRequests | None = None,
    containers: Mapping[tuple[str, int], str] | None = None,
) -> pd.DataFrame:
    """One row per target × stage, in run order, with `summary_columns(percentiles)`.

    `restarts` (target, stage → why) come from the server's metrics and `containers` from
    the container samples (restarted, OOM-killed); either makes a stage invalid.
    `breakdown` is `error_breakdown(requests)` and `records` is `StageRequests(requests,
    slo)`, when already computed.
    """
    limits = limits or AnalysisConfig()
    percentiles = percentiles or report_percentiles(limits, slo)
    breakdown = error_breakdown(requests) if breakdown is None else breakdown
    failures = {
        (str(target), int(stage)): rows
        for (target, stage), rows in breakdown.groupby(["target", "stage"], sort=False)
    }
    ctx = _Context(
        rec=records if records is not None else StageRequests(requests, slo),
        slo=slo,
        limits=limits,
        cost=cost or FailureCost(ttft_ms=60_000.0, e2e_ms=300_000.0),
        generator=generator if generator is not None else pd.DataFrame(),
        failures=failures,
        restarts=restarts or {},
        percentiles=percentiles,
        containers=containers or {},
    )
    rows = []
    for stage in stages:
        info = targets.get(stage.target) or TargetInfo(stage.target, "other", "", False)
        rows.append(_stage_row(stage, info, ctx))
    return pd.DataFrame(rows, columns=summary_columns(percentiles))
