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
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the partial last line of a killed writer
    return rows


def finished_stages(run_dir: Path, stage_counts: dict[str, int]) -> dict[str, int]:
    """Per target, how many leading stages are finished (0 … its number of stages)."""
    completed = {(str(s["target"]), s["stage"]) for s in _lines(run_dir / STAGES_FILE)
                 if s.get("completed")}  # fmt: skip
    recorded = {r["request_id"] for r in _lines(run_dir / REQUESTS_FILE)}
    missing = defaultdict(set)
    for entry in _lines(run_dir / SCHEDULED_FILE):
        if entry["request_id"] not in recorded:
            missing[str(entry["target"])].add(entry["stage"])
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
    kept: list[str] = []
    dropped: list[str] = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            dropped.append(line)
            continue
        target = str(row.get("target"))
        finished = keep.get(target, 0)
        (kept if int(row[stage_key]) < finished else dropped).append(line)
    if dropped:
        with path.with_suffix(".discarded.jsonl").open("a") as sink:
            sink.write("".join(line + "\n" for line in dropped))
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)
    return len(dropped)


def set_aside_unfinished(run_dir: Path, finished: dict[str, int]) -> int:
    """Move records, journal and stage lines of unfinished stages aside; returns records moved."""
    moved = _split(run_dir / REQUESTS_FILE, finished)
    _split(run_dir / SCHEDULED_FILE, finished)
    _split(run_dir / STAGES_FILE, finished)
    return moved
