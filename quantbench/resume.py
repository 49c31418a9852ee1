"""Resuming a killed run: which stages are really finished, and setting the rest aside.

A stage is finished when its stage record says it ran to its end *and* every request the
journal says was sent in it has its record (a killed generator loses the ones in flight).
From the first unfinished stage of a target on, its records and stage lines are moved to
`*.discarded.jsonl` (kept for inspection, never analysed) and those stages run again, so the
resumed run has each request once and no stage with missing requests.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from loadtest.jsonl import read_jsonl
from loadtest.records import REQUESTS_FILE, SCHEDULED_FILE, STAGES_FILE

__all__ = ["finished_stages", "set_aside_unfinished"]


def _object(raw: bytes) -> dict[str, Any]:
    row = json.loads(raw)
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    return row


def _keyed(raw: bytes) -> tuple[str, int]:
    """(target, stage) of a record, journal or stage line."""
    row = _object(raw)
    try:
        return str(row["target"]), int(row["stage"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"no target and stage: {exc}") from exc


def _rows(path: Path) -> list[dict[str, Any]]:
    """The readable lines (a killed writer's partial last line, or a corrupt one, is not)."""
    return read_jsonl(path, _object).rows


def finished_stages(run_dir: Path, stage_counts: dict[str, int]) -> dict[str, int]:
    """Per target, how many leading stages are finished (0 … its number of stages)."""
    completed = {(str(s.get("target")), s.get("stage")) for s in _rows(run_dir / STAGES_FILE)
                 if s.get("completed")}  # fmt: skip
    recorded = {r.get("request_id") for r in _rows(run_dir / REQUESTS_FILE)}
    missing = defaultdict(set)
    for entry in _rows(run_dir / SCHEDULED_FILE):
        if entry.get("request_id") not in recorded:
            missing[str(entry.get("target"))].add(entry.get("stage"))
    finished = {}
    for target, count in stage_counts.items():
        done = 0
        while done < count and (target, done) in completed and done not in missing[target]:
            done += 1
        finished[target] = done
    return finished


def _split(path: Path, keep: dict[str, int]) -> int:
    """Keep the lines of finished stages; append the rest to `<name>.discarded.jsonl`."""
    if not path.exists():
        return 0
    found = read_jsonl(path, _keyed)
    stage_of = dict(zip(found.numbers, found.rows, strict=True))
    kept: list[bytes] = []
    dropped: list[bytes] = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        key = stage_of.get(number)  # None: a partial or corrupt line, kept aside
        finished = key is not None and key[1] < keep.get(key[0], 0)
        (kept if finished else dropped).append(line)
    if dropped:
        with path.with_suffix(".discarded.jsonl").open("ab") as sink:
            sink.write(b"".join(line + b"\n" for line in dropped))
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in kept))
    tmp.replace(path)
    return len(dropped)


def set_aside_unfinished(run_dir: Path, finished: dict[str, int]) -> int:
    """Move records, journal and stage lines of unfinished stages aside; returns records moved."""
    moved = _split(run_dir / REQUESTS_FILE, finished)
    _split(run_dir / SCHEDULED_FILE, finished)
    _split(run_dir / STAGES_FILE, finished)
    return moved
