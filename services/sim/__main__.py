"""Command line of the simulator: `python -m services.sim --stack vllm --quant awq [...]`.

`build_parser`/`settings_from_args`/`main` are reused by `quantbench sim`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from services.sim.config import SimSettings
from services.sim.errors import SimConfigError, SimError
from services.sim.profiles import available_profiles
from services.sim.server import run

__all__ = ["build_parser", "main", "settings_from_args"]


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the simulator options to `parser` (a new one when None) and return it."""
    parser = parser or argparse.ArgumentParser(
        prog="python -m services.sim",
        description="Simulated LLM server (wire format and metrics of the chosen stack). "
        "All figures it produces are simulated.",
    )
    known = "; ".join(f"{s}-{q}: {', '.join(g)}" for s, q, g in available_profiles())
    add = parser.add_argument
    add("--stack", default="vllm", help="serving stack to imitate (default: vllm)")
    add("--quant", default="awq", help=f"quantization profile (default: awq); known: {known}")
    add("--gpu", default="h100", help="GPU whose profile to use (default: h100)")
    add(
        "--model", default=None, help="served model name (default: sim/llama-3.1-8b-instruct-QUANT)"
    )
    add(
        "--timing",
        default="profile",
        choices=("profile", "fixed"),
        help="profile: continuous-batching model of the profile; fixed: exact --ttft-ms/--itl-ms",
    )
    add("--ttft-ms", type=float, default=50.0, help="fixed timing: time to first token (ms)")
    add("--itl-ms", type=float, default=10.0, help="fixed timing: inter-token latency (ms)")
    add("--max-model-len", type=int, default=4096, help="context length (default: 4096)")
    add(
        "--max-concurrent-requests",
        type=int,
        default=128,
        help="TGI only: requests beyond this are refused as overloaded (default: 128)",
    )
    add("--seed", type=int, default=0, help="seed of the generated text (default: 0)")
    add("--speed", type=float, default=1.0, help="divide every simulated duration by this")
    add("--request-log", type=Path, help="append one JSON line per request (times, fault) here")
    faults = parser.add_argument_group("faults (times in simulated seconds after start)")
    fault = faults.add_argument
    fault("--stall-at", type=float, metavar="S", help="stall every stream at S seconds ...")
    fault("--stall-for", type=float, default=0.0, metavar="S", help="... for S seconds")
    fault(
        "--error",
        action="append",
        default=[],
        metavar="STATUS:RATE",
        help="answer this fraction of requests with this HTTP status (repeatable), e.g. 503:0.01",
    )
    fault("--cut-rate", type=float, default=0.0, help="fraction of streams cut mid-way")
    fault("--malformed-rate", type=float, default=0.0, help="fraction of streams with a bad event")
    fault("--hang-rate", type=float, default=0.0, help="fraction of requests never answered")
    fault("--refuse-for", type=float, default=0.0, metavar="S", help="refuse connections at first")
    fault("--restart-at", type=float, metavar="S", help="restart: drop connections, reset counters")
    fault("--restart-down", type=float, default=1.0, metavar="S", help="downtime of the restart")
    fault("--slowdown", type=float, default=1.0, help="multiply decode time (regression tests)")
    fault("--fault-seed", type=int, default=0, help="seed of the per-request fault draws")
    add("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    add("--port", type=int, default=0, help="port to bind; 0 lets the OS pick (default: 0)")
    return parser


def settings_from_args(args: argparse.Namespace) -> SimSettings:
    """Validate parsed options into `SimSettings`; raises pydantic's `ValidationError`."""
    fields = (
        "stack", "quant", "gpu", "model", "timing", "ttft_ms", "itl_ms",
        "max_model_len", "max_concurrent_requests", "seed", "host", "port",
    )  # fmt: skip
    data = {name: getattr(args, name) for name in fields}
    data["speed"] = args.speed
    data["request_log"] = args.request_log
    data["faults"] = {
        "stall_at_s": args.stall_at,
        "stall_for_s": args.stall_for,
        "errors": [_status_rate(text) for text in args.error],
        "cut_rate": args.cut_rate,
        "malformed_rate": args.malformed_rate,
        "hang_rate": args.hang_rate,
        "refuse_for_s": args.refuse_for,
        "restart_at_s": args.restart_at,
        "restart_down_s": args.restart_down,
        "slowdown": args.slowdown,
        "seed": args.fault_seed,
    }
    return SimSettings.model_validate(data)


def _status_rate(text: str) -> dict[str, str]:
    status, sep, rate = text.partition(":")
    if not sep:
        raise SimConfigError(f"--error {text!r}: write STATUS:RATE, e.g. 503:0.01")
    return {"status": status, "rate": rate}


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
