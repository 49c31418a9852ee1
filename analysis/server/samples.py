"""The `server_metrics.jsonl` format (parsed scrapes of each target's `/metrics`) and readers:
parsing happens once, when scraped, so the analysis reads plain records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from loadtest.jsonl import read_jsonl

__all__ = [
    "SAMPLE_COLUMNS",
    "SCRAPE_COLUMNS",
    "SERVER_METRICS_FILE",
    "Labels",
    "Sample",
    "error_record",
    "label_value",
    "load_samples",
    "load_scrapes",
    "ok_record",
    "parse_exposition",
    "read_records",
]

# One JSON line per scrape, flushed as written; `_created` samples are dropped. `wall_s` is
# `time.time()` when the scrape started (Prometheus stamps its samples the same way):
#   {"target": "vllm-awq", "wall_s": 1795735922.125, "ok": true, "duration_s": 0.004,
#    "samples": [["vllm:num_requests_running", {"engine": "0", "model_name": "m"}, 3.0], ...]}
#   {"target": "vllm-awq", "wall_s": 1795735923.125, "ok": false, "duration_s": 0.001,
#    "error": "ConnectError: [Errno 111] Connection refused"}
SERVER_METRICS_FILE = "server_metrics.jsonl"
SAMPLE_COLUMNS = ["target", "wall_s", "name", "labels", "le", "value"]
SCRAPE_COLUMNS = ["target", "wall_s", "ok", "error", "samples"]

Labels = tuple[tuple[str, str], ...]
"""Sorted (label, value) pairs, `le` excluded: hashable, so a frame can group by it."""


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


def parse_exposition(
    text: str, content_type: str = "", keep: Callable[[str], bool] | None = None
) -> list[Sample]:
    """Every sample of a `/metrics` page (Prometheus text or OpenMetrics), `_created` left out.

    Names are the parser's: as exposed, except that a counter sample always ends in `_total`
    (prometheus_client pages already do; TGI's hand-rendered `tgi_request_success` becomes
    `tgi_request_success_total`, while a Prometheus server stores it as exposed). Any prefix
    (`vllm:`, `exllamav2:`) is kept. Raises ValueError on text the parser rejects.
    """
    if content_type.startswith("application/openmetrics-text"):
        families = openmetrics_families(text)
    else:
        families = text_string_to_metric_families(text)
    out = []
    for family in families:
        for sample in family.samples:
            if sample.name.endswith("_created") or (keep is not None and not keep(sample.name)):
                continue
            out.append(Sample(sample.name, dict(sample.labels), float(sample.value)))
    return out


def ok_record(target: str, wall_s: float, duration_s: float, samples: list[Sample]) -> str:
    """One successful scrape as a JSON line (with its newline)."""
    body = {
        "target": target,
        "wall_s": wall_s,
        "ok": True,
        "duration_s": round(duration_s, 6),
        "samples": [[s.name, s.labels, s.value] for s in samples],
    }
    return json.dumps(body, separators=(",", ":")) + "\n"


def error_record(target: str, wall_s: float, duration_s: float, error: str) -> str:
    """One failed scrape (server down, HTTP error, unparsable page) as a JSON line."""
    body = {
        "target": target,
        "wall_s": wall_s,
        "ok": False,
        "duration_s": round(duration_s, 6),
        "error": error,
    }
    return json.dumps(body, separators=(",", ":")) + "\n"


def _scrape_record(raw: bytes) -> dict[str, Any]:
    record = json.loads(raw)
    if not isinstance(record, dict) or "target" not in record or "wall_s" not in record:
        raise ValueError("not a scrape record")
    return record


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a file, by `loadtest.jsonl`'s rule (a torn last line is dropped)."""
    yield from read_jsonl(path, _scrape_record).rows


def _path(run_dir_or_file: Path) -> Path:
    return run_dir_or_file / SERVER_METRICS_FILE if run_dir_or_file.is_dir() else run_dir_or_file


def load_scrapes(run_dir_or_file: Path) -> pd.DataFrame:
    """One row per scrape: `target, wall_s, ok, error, samples` (count), sorted by time."""
    rows = [
        (
            r["target"],
            float(r["wall_s"]),
            bool(r.get("ok")),
            r.get("error"),
            len(r.get("samples", ())),
        )
        for r in read_records(_path(run_dir_or_file))
    ]
    frame = pd.DataFrame(rows, columns=SCRAPE_COLUMNS)
    return frame.sort_values(["target", "wall_s"], ignore_index=True)


def label_value(labels: Labels, key: str) -> str | None:
    return next((v for k, v in labels if k == key), None)


def load_samples(run_dir_or_file: Path, names: Collection[str] | None = None) -> pd.DataFrame:
    """The tidy frame `target, wall_s, name, labels, le, value` of every successful scrape.

    `labels` is a `Labels` tuple without `le`; `le` is the bucket bound as a float (NaN for
    other samples). `names` keeps only those sample names (all when None).
    """
    wanted = set(names) if names is not None else None
    rows = []
    for record in read_records(_path(run_dir_or_file)):
        if not record.get("ok"):
            continue
        target, wall_s = record["target"], float(record["wall_s"])
        for name, labels, value in record.get("samples", ()):
            if wanted is not None and name not in wanted:
                continue
            le = labels.get("le")
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            rows.append((target, wall_s, name, rest, math.nan if le is None else float(le), value))
    frame = pd.DataFrame(rows, columns=SAMPLE_COLUMNS)
    frame["value"] = frame["value"].astype(float)
    frame["le"] = frame["le"].astype(float)
    return frame.sort_values(["target", "wall_s"], ignore_index=True, kind="stable")
