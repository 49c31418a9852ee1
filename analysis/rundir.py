"""Reading a run directory: run.json, request records and stage windows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from loadtest.generator_stats import GENERATOR_FILE
from loadtest.records import REQUESTS_FILE, STAGES_FILE, RequestRecord, StageRecord

__all__ = [
    "RUN_FILE",
    "RunDirError",
    "load_generator",
    "load_requests",
    "load_run_meta",
    "load_stages",
    "write_parquet",
    "write_stages",
]

RUN_FILE = "run.json"

_COLUMNS = list(RequestRecord.model_fields)


class RunDirError(Exception):
    """The run directory is missing a file or holds one that cannot be read."""


def load_run_meta(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise RunDirError(f"{path}: not found; is {run_dir} a quantbench run directory?") from exc
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc})") from exc
    return meta


def load_requests(run_dir: Path) -> pd.DataFrame:
    """All request records as a frame (one row each); an empty frame if none were written."""
    path = run_dir / REQUESTS_FILE
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in _COLUMNS})
    try:
        table = pa_json.read_json(path)
    except pa.ArrowInvalid as exc:
        # A run killed mid-write can leave a partial last line; keep every complete record.
        table = _read_complete_lines(path, exc)
    frame = table.to_pandas()
    for name in _COLUMNS:
        if name not in frame:
            frame[name] = None
    return frame[_COLUMNS]


def _read_complete_lines(path: Path, cause: Exception) -> pa.Table:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    if not rows:
        raise RunDirError(f"{path}: no readable records ({cause})") from cause
    return pa.Table.from_pylist(rows)


def load_generator(run_dir: Path) -> pd.DataFrame:
    """The load generator's own CPU samples (`pid, wall_s, cpu_percent`), if any."""
    path = run_dir / GENERATOR_FILE
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a partial last line from a killed process
    return pd.DataFrame(rows, columns=["pid", "wall_s", "cpu_percent"])


def load_stages(run_dir: Path) -> list[StageRecord]:
    path = run_dir / STAGES_FILE
    if not path.exists():
        return []
    stages = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            stages.append(StageRecord.model_validate_json(line))
        except ValueError as exc:
            raise RunDirError(f"{path}:{number}: not a stage record ({exc})") from exc
    return stages


def write_stages(run_dir: Path, stages: list[StageRecord]) -> None:
    """Rewrite stages.jsonl atomically, e.g. with validity filled in by the analysis."""
    path = run_dir / STAGES_FILE
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(stage.model_dump_json() + "\n" for stage in stages))
    tmp.replace(path)


def write_parquet(run_dir: Path, requests: pd.DataFrame) -> Path:
    path = run_dir / "requests.parquet"
    pq.write_table(pa.Table.from_pandas(requests, preserve_index=False), path)
    return path
