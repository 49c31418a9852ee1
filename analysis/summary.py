"""Per target × stage figures: the rows of summary.csv and each stage's validity.

Latency percentiles come from the raw records of the stage's measurement window (warm-up
excluded); throughput counts the requests and tokens that *finished* inside the window.
Records are grouped once (never filtered per stage) so a million-record run stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.config import AnalysisConfig, SloConfig
from analysis.stats import PERCENTILES, Quantile, quantiles
from loadtest.records import StageRecord

__all__ = [
    "STAT_METRICS",
    "SUMMARY_COLUMNS",
    "FailureCost",
    "TargetInfo",
    "stat_column",
    "summarize",
]

STAT_METRICS: dict[str, tuple[str, ...]] = {
    "": ("ttft", "tpot", "itl", "e2e"),  # ok requests only
    "_all": ("ttft", "e2e"),  # every request, failures at their timeout
}


def stat_column(metric: str, scope: str, part: str) -> str:
    """Column name of one statistic: part is `n`, `p95` (value), `p95_lo` or `p95_hi`."""
    if part == "n":
        return f"{metric}{scope}_n"
    p, _, bound = part.partition("_")
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


def _stat_columns() -> list[str]:
    names = []
    for scope, metrics in STAT_METRICS.items():
        for metric in metrics:
            names.append(stat_column(metric, scope, "n"))
            for p in PERCENTILES:
                names += [stat_column(metric, scope, f"p{p}{b}") for b in ("", "_lo", "_hi")]
    return [name for name in names if name not in _BASE_COLUMNS]


SUMMARY_COLUMNS = [
    *_BASE_COLUMNS,
    "error_rate",
    "output_tokens_mean",
    "tpot_undefined",
    "finished",  # ok requests that *ended* inside the window: what a server counts
    "finished_ttft_mean_ms",
    *_stat_columns(),
]


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


class _Records:
    """The request frame as numpy columns, grouped once by (target, stage) and by target."""

    def __init__(self, requests: pd.DataFrame, slo: SloConfig) -> None:
        codes, names = pd.factorize(requests["target"].astype(str), sort=False)
        self.targets = {str(name): index for index, name in enumerate(names)}
        self.code = codes
        self.stage = np.asarray(requests["stage"], dtype=np.int64)
        self.warmup = np.asarray(requests["warmup"].fillna(False), dtype=bool)
        outcome = requests["outcome"].astype(str)
        self.ok = np.asarray(outcome == "ok")
        self.not_sent = np.asarray(outcome == "not_sent")
        self.end_ns = _floats(requests, "end_ns")
        self.tokens = _floats(requests, "output_tokens")
        self.values = {m: _floats(requests, f"{m}_ms") for m in ("ttft", "tpot", "e2e")}
        self.lag = _floats(requests, "schedule_lag_ms")
        self.itl = _Gaps(_itl_lists(requests["itl_ms"]))
        self.meets = self._meets(slo)
        key = self.code.astype(np.int64) * (int(self.stage.max(initial=0)) + 1) + self.stage
        measured = np.flatnonzero(~self.warmup)
        self.groups = _split(measured, key[measured])
        self.finished = _split(np.flatnonzero(self.ok), self.code[self.ok].astype(np.int64))
        self._key_width = int(self.stage.max(initial=0)) + 1
        for code, index in self.finished.items():  # each target's ok rows, by end time
            self.finished[code] = index[np.argsort(self.end_ns[index], kind="stable")]

    def _meets(self, slo: SloConfig) -> np.ndarray:
        met = self.ok.copy()
        for metric, limit in (("ttft", slo.ttft_ms), ("tpot", slo.tpot_ms), ("e2e", slo.e2e_ms)):
            if limit is None:
                continue
            values = self.values[metric]
            within = values <= limit
            if metric == "tpot":
                within |= np.isnan(values)  # one output token: TPOT undefined, cannot violate
            met &= within
        return met

    def measured(self, target: str, stage: int) -> np.ndarray:
        code = self.targets.get(target)
        if code is None:
            return np.empty(0, dtype=np.int64)
        return self.groups.get(code * self._key_width + stage, np.empty(0, dtype=np.int64))

    def finished_between(self, target: str, start_ns: float, end_ns: float) -> np.ndarray:
        code = self.targets.get(target, -1)
        index = self.finished.get(code, np.empty(0, dtype=np.int64))
        ends = self.end_ns[index]
        lo, hi = np.searchsorted(ends, start_ns, "left"), np.searchsorted(ends, end_ns, "right")
        return np.asarray(index[lo:hi], dtype=np.int64)


def _split(index: np.ndarray, key: np.ndarray) -> dict[int, np.ndarray]:
    """Row indices grouped by key, each group in row order (one stable sort for all)."""
    if not len(key):
        return {}
    order = np.argsort(key, kind="stable")
    keys, starts = np.unique(key[order], return_index=True)
    parts = np.split(index[order], starts[1:])
    return {int(k): part for k, part in zip(keys, parts, strict=True)}


def _stats(row: dict[str, Any], metric: str, scope: str, values: np.ndarray) -> None:
    found: list[Quantile] = quantiles(values, [p / 100 for p in PERCENTILES])
    row[stat_column(metric, scope, "n")] = found[0].n
    for p, q in zip(PERCENTILES, found, strict=True):
        row[stat_column(metric, scope, f"p{p}")] = q.value
        row[stat_column(metric, scope, f"p{p}_lo")] = q.ci_low
        row[stat_column(metric, scope, f"p{p}_hi")] = q.ci_high


def _generator_cpu(generator: pd.DataFrame, stage: StageRecord) -> float | None:
    """The busiest generator process's mean CPU over the stage's measured window."""
    if generator.empty:
        return None
    start = stage.start_wall_s + stage.warmup_s
    window = generator[(generator["wall_s"] >= start) & (generator["wall_s"] <= stage.end_wall_s)]
    if window.empty:
        return None
    return float(window.groupby("pid")["cpu_percent"].mean().max())


def _reasons(
    stage: StageRecord,
    rec: _Records,
    index: np.ndarray,
    n_ok: int,
    limits: AnalysisConfig,
    generator: pd.DataFrame,
) -> tuple[list[str], float | None]:
    """Why a stage is invalid (empty when valid), and its p99 schedule lag."""
    reasons = []
    n = len(index)
    if not stage.completed:
        reasons.append("stage stopped before its end")
    if stage.workers_lost:
        reasons.append("a load-generator worker was lost during the stage")
    lag = quantiles(rec.lag[index], [0.99])[0].value
    if stage.mode != "concurrency" and n:
        sent = int((~rec.not_sent[index]).sum())
        if sent < 0.99 * n:
            reasons.append(f"only {sent} of {n} scheduled requests were sent (in-flight cap)")
        if lag is not None and lag > limits.max_schedule_lag_p99_ms:
            reasons.append(
                f"p99 schedule lag {lag:.1f} ms > {limits.max_schedule_lag_p99_ms:g} ms: "
                "the generator fell behind its schedule"
            )
    cpu = _generator_cpu(generator, stage)
    if cpu is not None and cpu > limits.max_generator_cpu_percent:
        reasons.append(
            f"load generator at {cpu:.0f}% CPU (> {limits.max_generator_cpu_percent:g}%): "
            "timings unreliable, add --processes"
        )
    if n_ok < limits.min_samples_p95:
        reasons.append(f"{n_ok} ok samples, p95 needs {limits.min_samples_p95}")
    error_rate = (n - n_ok) / n if n else 0.0
    if error_rate > limits.max_error_rate:
        reasons.append(f"error rate {error_rate:.1%} > {limits.max_error_rate:.1%}")
    return reasons, lag


def _stage_row(
    stage: StageRecord,
    info: TargetInfo,
    rec: _Records,
    limits: AnalysisConfig,
    cost: FailureCost,
    generator: pd.DataFrame,
) -> dict[str, Any]:
    measure_start_ns = stage.start_ns + int(stage.warmup_s * 1e9)
    duration_s = max((stage.end_ns - measure_start_ns) / 1e9, 1e-9)
    index = rec.measured(stage.target, stage.stage)
    ok = index[rec.ok[index]]
    finished = rec.finished_between(stage.target, measure_start_ns, stage.end_ns)
    n, n_ok = len(index), len(ok)
    reasons, lag = _reasons(stage, rec, index, n_ok, limits, generator)
    tokens = rec.tokens[ok]
    done = rec.values["ttft"][finished]
    row: dict[str, Any] = {
        "target": info.name,
        "stack": info.stack,
        "quant": info.quant,
        "simulated": info.simulated,
        "stage": stage.stage,
        "mode": stage.mode,
        "load": stage.load,
        "requests": n,
        "ok": n_ok,
        "errors": n - n_ok,
        "duration_s": duration_s,
        "req_per_s": len(finished) / duration_s,
        "output_tok_per_s": float(np.nansum(rec.tokens[finished])) / duration_s,
        "schedule_lag_p99_ms": lag,
        "goodput_req_per_s": int(rec.meets[finished].sum()) / duration_s,
        "valid": not reasons,
        "invalid_reason": "; ".join(reasons),
        "error_rate": (n - n_ok) / n if n else 0.0,
        "output_tokens_mean": float(np.nanmean(tokens)) if n_ok else None,
        "tpot_undefined": int((tokens <= 1).sum()),
        "finished": len(finished),
        "finished_ttft_mean_ms": float(np.nanmean(done)) if np.isfinite(done).any() else None,
    }
    for metric in ("ttft", "tpot", "e2e"):
        _stats(row, metric, "", rec.values[metric][ok])
    _stats(row, "itl", "", rec.itl.of(ok))
    for metric, cost_ms in (("ttft", cost.ttft_ms), ("e2e", cost.e2e_ms)):
        failed = np.full(n - n_ok, cost_ms)  # so failing fast cannot look fast
        _stats(row, metric, "_all", np.concatenate([rec.values[metric][ok], failed]))
    return row


def summarize(
    requests: pd.DataFrame,
    stages: list[StageRecord],
    targets: dict[str, TargetInfo],
    slo: SloConfig,
    limits: AnalysisConfig | None = None,
    cost: FailureCost | None = None,
    generator: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per target × stage, in run order, with SUMMARY_COLUMNS (DESIGN.md's first)."""
    limits = limits or AnalysisConfig()
    cost = cost or FailureCost(ttft_ms=60_000.0, e2e_ms=300_000.0)
    generator = generator if generator is not None else pd.DataFrame()
    rec = _Records(requests, slo)
    rows = []
    for stage in stages:
        info = targets.get(stage.target) or TargetInfo(stage.target, "other", "", False)
        rows.append(_stage_row(stage, info, rec, limits, cost, generator))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
