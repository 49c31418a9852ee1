"""`quantbench trace describe FILE`: a traffic trace at a glance, before a long replay.

Flags become a `TraceConfig` (validated as bench.yaml's `workload.trace` is); the numbers
come from `loadtest.traces.stats`, this module only prints them and writes the plots.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from loadtest.traces import (
    TraceConfig,
    TraceError,
    apply_controls,
    describe_trace,
    growth_stages,
    read_trace_config,
)
from loadtest.traces.stats import Lengths, TraceSummary
from quantbench.errors import ConfigError
from quantbench.traceplots import write_trace_plots

__all__ = ["add_trace_parser", "run_trace"]

_HELP = """Read a trace (Mooncake JSON lines, BurstGPT CSV, Azure LLM inference CSV, or any
JSON lines/CSV with --map) and print what it holds: input and output token lengths and their
correlation, the arrival rate over time and its burstiness (inter-arrival coefficient of
variation: 1 for Poisson arrivals, above 1 bursty), sessions, and prefix reuse from Mooncake
hash_ids (the share of prompt tokens in leading blocks an earlier request sent: the hit rate
of an unbounded prefix cache). --start/--duration/--sample/--speedup describe the trace as a
replay with those controls would send it; --stages shows a growth sweep's stages.

examples:
  quantbench trace describe examples/traces/synthetic_mooncake.jsonl --out trace-plots/
  quantbench trace describe BurstGPT_1.csv --start 1h --duration 10m --speedup 2
  quantbench trace describe calls.csv --map timestamp=ts,timestamp_unit=ms,\\
      input_tokens=prompt_len,output_tokens=completion_len,session=user

exit codes: 0 described; 2 a bad row (file:line: what), flag or file.
"""


def add_trace_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trace = commands.add_parser("trace", help="look at a traffic trace before replaying it")
    verbs = trace.add_subparsers(dest="trace_command", required=True, metavar="VERB")
    describe = verbs.add_parser(
        "describe",
        help="lengths, arrival rate, burstiness, sessions and prefix reuse of a trace",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    describe.add_argument("file", type=Path, help="the trace file")
    describe.add_argument(
        "--format",
        default="auto",
        help="auto (default: told from the first line), mooncake, burstgpt, azure, jsonl, csv",
    )
    describe.add_argument(
        "--map",
        metavar="FIELD=COLUMN,...",
        help="columns of a jsonl/csv trace: timestamp, timestamp_unit (s, ms, us, ns or "
        "datetime), input_tokens, output_tokens, and optionally session, hash_ids",
    )
    describe.add_argument(
        "--block-size", type=int, default=512, help="tokens per hash_ids block (default 512)"
    )
    describe.add_argument("--start", default="0", help="window start into the trace, e.g. 1h")
    describe.add_argument("--duration", help="window length, e.g. 10m (default: to the end)")
    describe.add_argument("--sample", default="1", help="share of rows kept, 0 < f <= 1")
    describe.add_argument("--speedup", default="1", help="replay this many times faster")
    describe.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    describe.add_argument(
        "--stages", metavar="X,Y,...", help="growth sweep rate multipliers to show, e.g. 1,2,4"
    )
    describe.add_argument(
        "--out", type=Path, help="folder for lengths.png, joint.png, arrivals.png, summary.json"
    )


def _mapping(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise ConfigError(f"--map: {text!r} is not FIELD=COLUMN,FIELD=COLUMN,...")
    return {key.strip(): value.strip() for key, value in pairs}


def _config(args: argparse.Namespace) -> TraceConfig:
    data: dict[str, Any] = {
        "file": args.file,
        "format": args.format,
        "block_size": args.block_size,
        "start": args.start,
        "sample": args.sample,
        "speedup": args.speedup,
    }
    if args.duration is not None:
        data["duration"] = args.duration
    if args.map is not None:
        data["mapping"] = _mapping(args.map)
    try:
        return TraceConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "flags"
        flag = "--" + where.replace("mapping.", "map ").replace("_", "-")
        raise ConfigError(f"trace describe: {flag}: {first['msg']}") from exc


def _stages(text: str | None) -> list[float]:
    if text is None:
        return []
    try:
        stages = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"--stages: {text!r} is not a list of numbers like 1,2,4") from exc
    if not stages or any(stage <= 0 for stage in stages):
        raise ConfigError("--stages: rate multipliers are numbers above 0, like 1,1.5,2")
    return stages


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _lengths_row(name: str, lengths: Lengths) -> list[str]:
    values = (lengths.mean, lengths.p50, lengths.p90, lengths.p99)
    return [name, *(f"{v:,.0f}" for v in values), f"{lengths.min:,}", f"{lengths.max:,}",
            f"{lengths.zero:,}"]  # fmt: skip


def _tables(summary: TraceSummary, console: Console) -> None:
    lengths = Table(title="Token lengths (per request)", title_justify="left")
    for column in ("", "mean", "p50", "p90", "p99", "min", "max", "zero"):
        lengths.add_column(column, justify="left" if not column else "right")
    lengths.add_row(*_lengths_row("input", summary.input_tokens))
    lengths.add_row(*_lengths_row("output", summary.output_tokens))
    console.print(lengths)
    facts = Table(title="Arrivals, sessions, prefixes", title_justify="left", show_header=False)
    facts.add_column("")
    facts.add_column("", justify="right")
    rho = summary.input_output_spearman
    facts.add_row("input-output rank correlation", "n/a" if rho is None else f"{rho:+.2f}")
    facts.add_row("mean rate", f"{summary.mean_rate_per_s:.3g} req/s")
    facts.add_row(
        f"peak rate (busiest {summary.rate_bucket_s:g} s)",
        f"{summary.peak_rate_per_s:.3g} req/s ({summary.peak_to_mean:.1f}x the mean)",
    )
    cv, dispersion = summary.interarrival_cv, summary.dispersion_index
    facts.add_row("inter-arrival CV (1 = Poisson)", "n/a" if cv is None else f"{cv:.2f}")
    facts.add_row(
        "count variance/mean (1 = Poisson)", "n/a" if dispersion is None else f"{dispersion:.2f}"
    )
    if summary.out_of_order:
        facts.add_row("rows out of timestamp order (sorted)", f"{summary.out_of_order:,}")
    if summary.sessions is not None:
        s = summary.sessions
        facts.add_row(
            "sessions", f"{s.sessions:,} (turns: mean {s.turns_mean:.1f}, max {s.turns_max})"
        )
        facts.add_row("requests in multi-turn sessions", f"{s.multi_turn_request_share:.0%}")
    if summary.prefix is not None:
        p = summary.prefix
        facts.add_row(
            f"prompt tokens in reused blocks ({p.block_size} tokens)",
            f"{p.reused_token_share:.1%}",
        )
        facts.add_row("distinct blocks", f"{p.distinct_blocks:,}")
        if p.block_count_mismatches:
            facts.add_row(
                "rows with blocks != input / block size",
                f"{p.block_count_mismatches:,} (check --block-size)",
            )
    console.print(facts)


def _growth(summary: TraceSummary, stages: list[float], console: Console, trace: Any) -> None:
    table = Table(title="Growth sweep (load.mode: replay)", title_justify="left")
    for column in ("stage", "rate x", "duration", "requests", "mean req/s", "peak req/s"):
        table.add_column(column, justify="right")
    for stage in growth_stages(trace, stages):
        table.add_row(
            str(stage.index),
            f"{stage.multiplier:g}",
            _duration(stage.duration_s),
            f"{stage.requests:,}",
            f"{stage.rate_per_s:.3g}",
            f"{summary.peak_rate_per_s * stage.multiplier:.3g}",
        )
    console.print(table)


def run_trace(args: argparse.Namespace, console: Console) -> int:
    """Describe the trace; with --out, write the plots and summary.json and print the folder
    last. A bad row or flag is a ConfigError (one line, exit 2)."""
    config = _config(args)
    stages = _stages(args.stages)
    try:
        trace = apply_controls(read_trace_config(config), config, seed=args.seed)
        description = describe_trace(trace, block_size=config.block_size)
    except TraceError as exc:
        raise ConfigError(str(exc)) from exc
    summary = description.summary
    controlled = config.start > 0 or config.duration is not None or config.sample < 1
    controlled = controlled or config.speedup != 1
    console.print(
        f"[bold]{config.file}[/bold] ({summary.format}): {summary.requests:,} requests over "
        f"{_duration(summary.span_s)}"
        + (" (after window, sample and speedup)" if controlled else ""),
        soft_wrap=True,
    )
    _tables(summary, console)
    if stages:
        _growth(summary, stages, console, trace)
    if args.out is not None:
        for path in write_trace_plots(description, args.out):
            console.print(f"plot: {path}", soft_wrap=True)
        (args.out / "summary.json").write_text(json.dumps(summary.model_dump(), indent=2) + "\n")
        print(args.out)
    return 0
