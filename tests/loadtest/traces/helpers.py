"""Small traces written by tests, and where the shipped example traces are."""

from __future__ import annotations

import json
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "traces"


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def mooncake_row(ms: float, inp: int, out: int, ids: list[int] | None = None) -> dict[str, object]:
    row: dict[str, object] = {"timestamp": ms, "input_length": inp, "output_length": out}
    if ids is not None:
        row["hash_ids"] = ids
    return row
