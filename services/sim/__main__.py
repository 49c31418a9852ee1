"""Command line of the simulator: `python -m services.sim --stack vllm --quant awq [...]`.

The flags are derived from the settings models (`flags.py`); `quantbench run` passes the whole
model with `--settings-json`. `build_parser`/`settings_from_args`/`main` are reused by
`quantbench sim`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from services.sim.errors import SimError
from services.sim.flags import add_settings_flags, settings_from_args
from services.sim.profiles import available_profiles
from services.sim.server import run

__all__ = ["build_parser", "main", "settings_from_args"]


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the simulator options to `parser` (a new one when None) and return it."""
    known = "; ".join(f"{s}-{q}: {', '.join(g)}" for s, q, g in available_profiles())
    parser = parser or argparse.ArgumentParser(
        prog="python -m services.sim",
        description="Simulated LLM server (wire format and metrics of the chosen stack). "
        "All figures it produces are simulated.",
        epilog=f"Known profiles (stack-quant: gpus): {known}.",
    )
    add_settings_flags(parser)
    return parser


def _one_line(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse `argv`, serve until SIGTERM/SIGINT; 0 on a clean stop, 2 on bad input."""
    parser = build_parser()
    parser.prog = prog or parser.prog
    args = parser.parse_args(argv)
    try:
        return run(settings_from_args(args))
    except ValidationError as exc:
        message = f"invalid settings: {_one_line(exc)}"
    except SimError as exc:
        message = str(exc)
    except OSError as exc:  # e.g. the port is taken
        message = f"cannot serve: {exc}"
    print(f"quantbench-sim: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
