"""A seeded synthetic production trace, and the example traces shipped in examples/traces/.

The traffic has what real traces have and what replay must reproduce: a diurnal-ish ramp (the
rate rises and falls over the trace), bursts (short spells of several times the rate, from a
batch job that shares one system prompt), multi-turn sessions (each turn's prompt is the
previous turn's prompt and answer plus a new message), and shared prefixes (a few system
prompts), written as Mooncake `hash_ids` of `block_size`-token blocks: a turn reuses the ids
of the whole blocks of the turn before it, as chained block hashes do.

    python -m benchmarks.trace_synth --out examples/traces    # rewrite the shipped examples
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SyntheticTrace",
    "synthetic_trace",
    "write_azure",
    "write_burstgpt",
    "write_examples",
    "write_large_mooncake",
    "write_mooncake",
]


@dataclass(frozen=True)
class SyntheticTrace:
    timestamp_ms: np.ndarray  # int64, ascending
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    session: np.ndarray  # int64 session number; batch-job requests are sessions of one turn
    hash_ids: list[list[int]]


def _day(t: np.ndarray, duration_s: float) -> np.ndarray:
    """Relative rate of the ramp: a half-sine 'day' from 0.15 up to 1 and back."""
    return 0.15 + 0.85 * np.sin(np.pi * t / duration_s)


def synthetic_trace(
    duration_s: float = 180.0,
    rate_per_s: float = 2.0,
    seed: int = 0,
    block_size: int = 512,
    bursts: int = 3,
    burst_s: float = 4.0,
) -> SyntheticTrace:
    """Chat sessions at up to `rate_per_s` requests/s (at the ramp's top), plus `bursts`
    batch jobs of `burst_s` seconds at 6 × `rate_per_s`, single requests sharing a prompt."""
    rng = np.random.default_rng(seed)
    system_blocks = [list(range(i * 4, i * 4 + 1 + i % 3)) for i in range(4)]  # 1-3 blocks
    next_id = 4 * len(system_blocks)
    rows: list[tuple[float, int, int, int, list[int]]] = []
    mean_turns = 3.0
    # Session starts: a Poisson process thinned to the ramp; each session has ~3 turns.
    peak = rate_per_s / mean_turns
    starts = np.cumsum(rng.exponential(1.0 / peak, int(peak * duration_s * 1.5) + 16))
    starts = starts[starts < duration_s]
    starts = starts[rng.random(len(starts)) < _day(starts, duration_s)]
    session = 0
    for session, start in enumerate(starts):
        system = system_blocks[min(int(rng.zipf(2.0)) - 1, len(system_blocks) - 1)]
        # What the next prompt starts with: the prompt before (its whole blocks keep their
        # ids) and that prompt's answer (new blocks), then the user's new message.
        prompt_tokens, history_tokens, ids = 0, len(system) * block_size, list(system)
        t = float(start)
        for _ in range(int(rng.geometric(1.0 / mean_turns))):
            if t >= duration_s:
                break
            message = int(np.clip(rng.lognormal(np.log(250), 0.6), 16, 2000))
            output = int(np.clip(rng.lognormal(np.log(180), 0.7), 1, 1024))
            tokens = history_tokens + message
            whole = prompt_tokens // block_size if prompt_tokens else len(system)
            count = -(-tokens // block_size)
            ids = ids[:whole] + list(range(next_id, next_id + count - whole))
            next_id += count - whole
            rows.append((t, tokens, output, session, ids))
            prompt_tokens, history_tokens = tokens, tokens + output
            t += float(rng.exponential(15.0)) + 2.0  # the user reads, thinks, types
    job_prompt = [next_id, next_id + 1]  # a batch job's 2-block instructions, shared
    next_id += 2
    for begin in np.sort(rng.uniform(0.1, 0.85, bursts)) * duration_s:
        count = rng.poisson(6 * rate_per_s * burst_s)
        for t in np.sort(begin + rng.uniform(0, burst_s, count)):
            session += 1
            document = int(rng.integers(64, 1500))
            tokens = 2 * block_size + document
            own = -(-document // block_size)
            ids = job_prompt + list(range(next_id, next_id + own))
            next_id += own
            rows.append((float(t), tokens, int(rng.integers(16, 128)), session, ids))
    rows.sort(key=lambda row: row[0])
    return SyntheticTrace(
        timestamp_ms=np.array([round(r[0] * 1000) for r in rows], dtype=np.int64),
        input_tokens=np.array([r[1] for r in rows], dtype=np.int64),
        output_tokens=np.array([r[2] for r in rows], dtype=np.int64),
        session=np.array([r[3] for r in rows], dtype=np.int64),
        hash_ids=[r[4] for r in rows],
    )


def write_mooncake(trace: SyntheticTrace, path: Path, sessions: bool = True) -> Path:
    """Mooncake JSON lines (`session_id` as AIPerf reads it, unless `sessions` is False)."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(len(trace.timestamp_ms)):
            row: dict[str, object] = {
                "timestamp": int(trace.timestamp_ms[i]),
                "input_length": int(trace.input_tokens[i]),
                "output_length": int(trace.output_tokens[i]),
                "hash_ids": trace.hash_ids[i],
            }
            if sessions:
                row["session_id"] = f"s{trace.session[i]}"
            out.write(json.dumps(row) + "\n")
    return path


def write_burstgpt(trace: SyntheticTrace, path: Path, rows: int = 120) -> Path:
    """BurstGPT's six columns (seconds; a few failed requests with 0 response tokens)."""
    rng = np.random.default_rng(1)
    lines = ["Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"]
    for i in range(min(rows, len(trace.timestamp_ms))):
        model = "GPT-4" if rng.random() < 0.2 else "ChatGPT"
        log = "API log" if rng.random() < 0.3 else "Conversation log"
        request = int(trace.input_tokens[i])
        response = 0 if rng.random() < 0.03 else int(trace.output_tokens[i])
        seconds = trace.timestamp_ms[i] / 1000
        lines.append(f"{seconds:.3f},{model},{request},{response},{request + response},{log}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_azure(trace: SyntheticTrace, path: Path, rows: int = 120) -> Path:
    """The Azure LLM inference trace's columns, with its timestamp style (7 decimals)."""
    origin = np.datetime64("2023-11-16T18:15:46.680590", "ns")
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for i in range(min(rows, len(trace.timestamp_ms))):
        stamp = origin + np.timedelta64(int(trace.timestamp_ms[i]) * 1_000_000, "ns")
        text = str(stamp).replace("T", " ")[:27]  # YYYY-MM-DD HH:MM:SS.fffffff
        lines.append(f"{text},{int(trace.input_tokens[i])},{int(trace.output_tokens[i])}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_examples(out: Path) -> list[Path]:
    """The shipped examples: exactly what this function writes (a test checks it)."""
    out.mkdir(parents=True, exist_ok=True)
    trace = synthetic_trace()
    return [
        write_mooncake(trace, out / "synthetic_mooncake.jsonl"),
        write_burstgpt(trace, out / "burstgpt_sample.csv"),
        write_azure(trace, out / "azure_sample.csv"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trace_synth", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("examples/traces"))
    args = parser.parse_args()
    for path in write_examples(args.out):
        print(path)


if __name__ == "__main__":
    main()


def write_large_mooncake(path: Path, rows: int, seed: int = 0, block_size: int = 512) -> Path:
    """`rows` Mooncake lines fast (for `make bench`): gamma arrivals, lognormal lengths, one
    of 8 shared system prompts (1-2 blocks) then blocks of each request's own."""
    rng = np.random.default_rng(seed)
    times_ms = np.cumsum(rng.gamma(0.5, 2 * 100.0, rows)).round().astype(np.int64)
    inputs = np.clip(rng.lognormal(np.log(1500), 0.8, rows), 16, 32_000).astype(np.int64)
    outputs = np.clip(rng.lognormal(np.log(200), 0.8, rows), 1, 4096).astype(np.int64)
    systems = rng.integers(0, 8, rows)
    blocks = -(-inputs // block_size)
    next_id = 16
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            shared = [2 * systems[i], 2 * systems[i] + 1][: min(2, int(blocks[i]))]
            own = int(blocks[i]) - len(shared)
            ids = ",".join(map(str, [*shared, *range(next_id, next_id + own)]))
            next_id += own
            out.write(
                f'{{"timestamp": {times_ms[i]}, "input_length": {inputs[i]}, '
                f'"output_length": {outputs[i]}, "hash_ids": [{ids}]}}\n'
            )
    return path
