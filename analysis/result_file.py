"""`result.json`: the one machine-readable result of a run (pure; the pipeline writes it).

Each stage entry is shaped like one result of vLLM's `vllm bench serve --save-result`, with
the same field names where the quantity is the same, so dashboards built for those files can
read ours. The names were read in vllm-project/vllm, `vllm/benchmarks/serve.py` (commit
009e6d4a1cd6): the setup keys of `main` (`date`, `backend`, `model_id`, `num_prompts`,
`request_rate`, `burstiness`, `max_concurrency`, …), the `result` dict of `benchmark`
(`duration`, `completed`, `failed`, `total_input_tokens`, `request_throughput`,
`output_throughput`, `total_token_throughput`, …) and `process_one_metric`, which writes
`mean_/median_/std_<metric>_ms` and `p<P>_<metric>_ms` with P as `str(int(p))` for whole
percentiles (`p99`) and `str(p)` otherwise (`p99.9`), for `ttft`, `tpot`, `itl` and `e2el`.

Differences, by design: one entry per target × stage (vLLM writes one per run); `duration` is
the stage's measured window, not the time to the last completion; `completed` and the
latencies count the stage's own `ok` requests (MEASUREMENT.md); `failed` counts every other
outcome; our own figures (validity, error breakdown, SLO verdicts) sit beside them.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pandas as pd

from analysis.compare import Comparison
from analysis.config import percentile_word
from analysis.gpu_stages import telemetry_entry
from analysis.plan import Plan
from analysis.summary import stat_column
from loadtest.run_meta import RunMeta, TargetMeta

__all__ = [
    "RESULT_FILE",
    "SCHEMA_VERSION",
    "VLLM_METRICS",
    "VLLM_STAGE_FIELDS",
    "result_document",
    "vllm_metric_fields",
]

RESULT_FILE = "result.json"
SCHEMA_VERSION = 1

VLLM_STAGE_FIELDS = (
    # main(): the run's setup
    "date",
    "endpoint_type",
    "backend",
    "label",
    "model_id",
    "tokenizer_id",
    "num_prompts",
    "request_rate",
    "burstiness",
    "max_concurrency",
    # benchmark(): the result dict
    "duration",
    "completed",
    "failed",
    "total_input_tokens",
    "total_output_tokens",
    "request_throughput",
    "request_goodput",
    "output_throughput",
    "total_token_throughput",
)
"""vLLM `--save-result` fields every stage entry carries (besides the latency statistics)."""

VLLM_METRICS = {"ttft": "ttft", "tpot": "tpot", "itl": "itl", "e2e": "e2el"}
"""Our metric name → vLLM's (`e2e` is `e2el` there)."""


def vllm_metric_fields(percentiles: list[float]) -> list[str]:
    """`mean_ttft_ms`, `median_ttft_ms`, `std_ttft_ms`, `p99_ttft_ms`, … for each metric."""
    names = []
    for theirs in VLLM_METRICS.values():
        names += [f"mean_{theirs}_ms", f"median_{theirs}_ms", f"std_{theirs}_ms"]
        names += [f"p{percentile_word(p)}_{theirs}_ms" for p in percentiles]
    return names


def _clean(value: Any) -> Any:
    """JSON-safe: NaN → None, numpy scalars → Python numbers."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _backend(target: TargetMeta | None, endpoint: str) -> str:
    if target is not None and target.api == "tgi":
        return "tgi"
    return "openai-chat" if endpoint == "chat" else "openai"


def _stage(
    row: dict[str, Any],
    target: TargetMeta | None,
    setup: dict[str, Any],
    percentiles: list[float],
    errors: list[dict[str, Any]],
) -> dict[str, Any]:
    mode, load = str(row["mode"]), float(row["load"])
    entry: dict[str, Any] = {
        "target": row["target"],
        "stage": int(row["stage"]),
        "repeat": int(row.get("repeat") or 0),
        "mode": mode,
        "load": load,
        "valid": bool(row["valid"]),
        "invalid_reason": row["invalid_reason"] or None,
        "stack": row["stack"],
        "quant": row["quant"],
        "simulated": bool(row["simulated"]),
        "date": setup["date"],
        "endpoint_type": _backend(target, setup["endpoint"]),
        "backend": _backend(target, setup["endpoint"]),
        "label": row["target"],
        "model_id": target.model if target is not None else None,
        "tokenizer_id": setup["tokenizer"],
        "num_prompts": int(row["requests"]),
        "request_rate": load if mode == "rate" else "inf",
        "burstiness": setup["burstiness"],
        "max_concurrency": int(load) if mode == "concurrency" else None,
        "duration": row["duration_s"],
        "completed": int(row["ok"]),
        "failed": int(row["errors"]),
        "total_input_tokens": row["input_tokens"],
        "total_output_tokens": row["output_tokens"],
        "request_throughput": row["req_per_s"],
        "request_goodput": row["goodput_req_per_s"],
        "output_throughput": row["output_tok_per_s"],
        "total_token_throughput": row["total_tok_per_s"],
        "input_throughput": row["input_tok_per_s"],
        "error_rate": row["error_rate"],
        "errors": errors,
        "telemetry": telemetry_entry(row),  # GPU power, energy per token; container (or None)
    }
    for ours, theirs in VLLM_METRICS.items():
        entry[f"mean_{theirs}_ms"] = row.get(stat_column(ours, "", "mean"))
        entry[f"median_{theirs}_ms"] = row.get(stat_column(ours, "", "p50"))
        entry[f"std_{theirs}_ms"] = row.get(stat_column(ours, "", "std"))
        entry[f"{theirs}_count"] = row.get(stat_column(ours, "", "n"))
        for p in percentiles:
            word = f"p{percentile_word(p)}"
            entry[f"{word}_{theirs}_ms"] = row.get(stat_column(ours, "", word))
    return {key: _clean(value) for key, value in entry.items()}


def _setup(meta: RunMeta) -> dict[str, Any]:
    workload = meta.config.get("workload") or {}
    load = meta.config.get("load") or {}
    started = str(meta.started_at or "")
    try:
        date = datetime.fromisoformat(started).strftime("%Y%m%d-%H%M%S")
    except ValueError:
        date = None
    tokenizer = workload.get("tokenizer")
    return {
        "date": date,
        "endpoint": workload.get("endpoint", "chat"),
        "tokenizer": str(tokenizer) if tokenizer else None,
        "burstiness": load.get("burstiness", 1.0) if load.get("mode") == "rate" else None,
    }


def result_document(
    meta: RunMeta,
    summary: pd.DataFrame,
    comparison: Comparison,
    plan: Plan | None,
    headline: list[str],
    breakdown: pd.DataFrame,
    percentiles: list[float],
) -> dict[str, Any]:
    """The whole result.json document (`schema_version` 1)."""
    setup = _setup(meta)
    targets = {t.name: t for t in meta.targets}
    errors: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in breakdown.to_dict("records"):
        errors.setdefault((str(r["target"]), int(r["stage"])), []).append(
            {
                "outcome": r["outcome"],
                "http_status": _clean(r["http_status"]) if pd.notna(r["http_status"]) else None,
                "count": int(r["count"]),
                "example": r["example"] or None,
            }
        )
    stages = [
        _stage(
            row,
            targets.get(str(row["target"])),
            setup,
            percentiles,
            errors.get((str(row["target"]), int(row["stage"])), []),
        )
        for row in summary.to_dict("records")
    ]
    pairs = comparison.pairs if comparison.pairs is not None else pd.DataFrame()
    return {
        "schema_version": SCHEMA_VERSION,
        "generator": f"quantbench {meta.quantbench_version or '?'}",
        "run_id": meta.run_id,
        "name": meta.name,
        "started_at": meta.started_at,
        "ended_at": meta.ended_at,
        "config": meta.config,
        "targets": [
            {
                "name": name,
                "stack": t.stack,
                "quant": t.quant,
                "simulated": t.simulated,
                "model_id": t.model,
                "capacity": comparison.capacity[name].to_json()
                if name in comparison.capacity
                else None,
            }
            for name, t in targets.items()
        ],
        "stages": stages,
        "verdict": {
            "headline": headline,
            "reference": comparison.reference,
            "ranking": comparison.ranking,
            "pairs": [
                {key: _clean(value) for key, value in r.items()}
                for r in pairs.drop(columns="column", errors="ignore").to_dict("records")
            ],
            "plan": plan.to_json() if plan is not None else None,
        },
    }
