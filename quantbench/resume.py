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

from loadtest.records import REQUESTS_FILE, SCHEDULED_FILE, STAGES_FILE

__all__ = ["finished_stages", "set_aside_unfinished"]


def _lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the partial last line of a killed writer (or a corrupt one)
        if isinstance(row, dict):
            rows.append(row)
    return rows


def finished_stages(run_dir: Path, stage_counts: dict[str, int]) -> dict[str, int]:
    """Per target, how many leading stages are finished (0 … its number of stages)."""
    completed = {(str(s.get("target")), s.get("stage")) for s in _lines(run_dir / STAGES_FILE)
                 if s.get("completed")}  # fmt: skip
    recorded = {r.get("request_id") for r in _lines(run_dir / REQUESTS_FILE)}
    missing = defaultdict(set)
    for entry in _lines(run_dir / SCHEDULED_FILE):
        if entry.get("request_id") not in recorded:
            missing[str(entry.get("target"))].add(entry.get("stage"))
    finished = {}
    for target, count in stage_counts.items():
        done = 0
        while done < count and (target, done) in completed and done not in missing[target]:
            done += 1
        finished[target] = done
    return finished


def _split(path: Path, keep: dict[str, int], stage_key: str = "stage") -> int:
    """Keep the lines of finished stages; append the rest to `<name>.discarded.jsonl`."""
    if not path.exists():
        return 0
    kept: list[bytes] = []
    dropped: list[bytes] = []
    for line in path.read_bytes().splitlines():
        try:
            row = json.loads(line)
            finished = keep.get(str(row.get("target")), 0)
            stage = int(row[stage_key])
        except (ValueError, TypeError, KeyError, AttributeError):
            dropped.append(line)  # a partial or corrupt line: kept aside, never analysed
            continue
        (kept if stage < finished else dropped).append(line)
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
