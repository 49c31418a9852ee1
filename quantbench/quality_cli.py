"""The `quantbench quality` subcommand: its flags and their one-line errors."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import TypeAdapter, ValidationError
from rich.console import Console

from loadtest.quality.config import Fraction
from quantbench.config import load_config
from quantbench.errors import ConfigError
from quantbench.quality import run_quality

__all__ = ["BAR_HELP", "add_quality_parser", "parse_bar", "run_quality_command"]

BAR_HELP = (
    "accuracy bar: largest perplexity increase over FP16 a target may have, e.g. 2%% or 0.02; "
    "a target meets it when its whole 95%% CI is within it"
)

_HELP = """Measure what each target serves, through its own HTTP API, next to FP16:
- perplexity of a text (quality.text; default: a sample shipped with quantbench) over windows
  of quality.window tokens every quality.stride tokens (defaults 1024/512), every target asked
  for the same token windows, with a 95% bootstrap CI over windows and the change against the
  FP16 reference (paired: a 1% change is called only when its CI excludes 0);
- greedy agreement with the reference on a fixed prompt set (exact-match rate, first
  divergence in tokens), and accuracy on an optional task file (quality.tasks).
Targets whose API cannot give a measure are listed as not measurable, with the reason.
Starts `sim:` targets like `quantbench run`; compose targets are not supported yet.
The same probe runs inside `quantbench run`, after each target's load stages, when bench.yaml
has a `quality:` section; its report then sets perplexity beside load within the SLO.

Writes quality.json and quality.md to a new folder under --out and prints its path last.

examples:
  quantbench quality bench.yaml
  quantbench quality bench.yaml --max-ppl-increase 2% --target vllm-awq --target vllm-gptq

exit codes: 0 done; 1 --max-ppl-increase given and no quantized target meets it;
2 bad input (config, flag, text file) or a bar without an FP16 reference (one line on stderr).
"""


def add_quality_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    quality = commands.add_parser(
        "quality",
        help="perplexity and greedy agreement of each target against FP16, through its API",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    quality.add_argument("config", type=Path, help="bench.yaml: targets and a `quality:` section")
    quality.add_argument(
        "--out", type=Path, default=Path("runs"), help="folder for the results (default: runs/)"
    )
    quality.add_argument(
        "--target", action="append", metavar="NAME", help="probe only this target (repeatable; "
        "the FP16 reference is always added)",
    )  # fmt: skip
    quality.add_argument(
        "--max-ppl-increase",
        metavar="PCT",
        help=BAR_HELP + " (default: quality.max_ppl_increase)",
    )


def parse_bar(text: str | None) -> float | None:
    """`--max-ppl-increase` as a fraction (`2%` or `0.02`), or one ConfigError line."""
    if text is None:
        return None
    try:
        return float(TypeAdapter(Fraction).validate_python(text))
    except ValidationError as exc:
        message = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        raise ConfigError(f"--max-ppl-increase: {message}") from exc


def run_quality_command(args: argparse.Namespace, console: Console) -> int:
    bar = parse_bar(args.max_ppl_increase)
    config = load_config(args.config)
    folder, _, code = run_quality(config, args.out, args.target, bar, console)
    print(folder)
    return code
