"""How accurate one generator core is, and how far it goes (benchmarks/accuracy.py runs each
measurement; this module chooses the loads and prints the figures).

1. Accuracy at 64 and 256 closed-loop streams of 128 tokens at 10 ms/token, quantbench's
   Locust generator (one process) beside the asyncio + aiohttp reference, each beside the
   simulator's own lateness and CPU in that run.
2. Ceiling: the most token events/s one client core takes with TTFT error p50 ≤ 1 ms,
   p95 ≤ 3 ms and ITL error p95 ≤ 1.5 ms. One simulator core cannot write that many events
   one at a time, so here it writes `burst` tokens (one event each) per write; the loads
   climb until a client misses a target, or the simulator itself runs late (its writes then
   bunch: the client cannot be judged at the load named, and the search says so).
3. `processes: N`: the same load from one and from two generator processes, as tokens/s per
   process (two processes share the machine's two cores with the simulator).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from benchmarks.accuracy import QUANTBENCH, REFERENCE, AccuracyResult, Load, measure_one
from benchmarks.cores import pinning

__all__ = ["TARGETS", "Ceiling", "meets_targets", "print_generator_speed"]

TARGETS = {"ttft_p50_ms": 1.0, "ttft_p95_ms": 3.0, "itl_p95_ms": 1.5}
_SERVER_LATE_P99_MS = 5.0  # beyond this the simulator's writes bunch: not the load named
_CEILING_STREAMS = (256, 384, 512, 768, 1024, 1536)
_CEILING_BURST = 4
_SCALING_LOAD = Load(streams=512, burst=_CEILING_BURST)
_NAMES = {QUANTBENCH: "quantbench (Locust)", REFERENCE: "asyncio + aiohttp (reference)"}


def meets_targets(r: AccuracyResult) -> bool:
    return (
        r.ttft_err_p50_ms <= TARGETS["ttft_p50_ms"]
        and r.ttft_err_p95_ms <= TARGETS["ttft_p95_ms"]
        and r.itl_err_p95_ms <= TARGETS["itl_p95_ms"]
    )


def _server_on_time(r: AccuracyResult) -> bool:
    return r.server_late_p99_ms <= _SERVER_LATE_P99_MS


@dataclass(frozen=True)
class Ceiling:
    client: str
    events_per_s: float | None  # the highest load that met every target (None: not even the first)
    steps: list[AccuracyResult]
    stopped: str


def _ceiling(client: str, seconds: float) -> Ceiling:
    steps: list[AccuracyResult] = []
    best: float | None = None
    stopped = "the top of the ladder"
    for streams in _CEILING_STREAMS:
        result = measure_one(Load(streams, burst=_CEILING_BURST, seconds=seconds), client)
        steps.append(result)
        _row(result, indent="  ")
        if not _server_on_time(result):
            stopped = f"the simulator running late at {result.events_per_s:,.0f} events/s"
            break
        if not meets_targets(result):
            stopped = f"a missed target at {result.events_per_s:,.0f} events/s"
            break
        best = result.events_per_s
    return Ceiling(client, best, steps, stopped)


def _header() -> None:
    print(
        f"  {'client':<31} {'events/s':>8} {'TTFT p50':>9} {'p95':>8} {'|ITL| p95':>9} "
        f"{'CPU/proc':>8} | {'sim late p50':>12} {'p99':>8} {'sim CPU':>7}"
    )


def _row(r: AccuracyResult, indent: str = "  ") -> None:
    name = _NAMES[r.client] + (f" x{r.processes}" if r.processes > 1 else "")
    mark = "" if _server_on_time(r) else "  (simulator late: its writes bunch, not the load named)"
    print(
        f"{indent}{name:<31} {r.events_per_s:>8,.0f} {r.ttft_err_p50_ms:>+7.2f}ms "
        f"{r.ttft_err_p95_ms:>+6.2f}ms {r.itl_err_p95_ms:>7.2f}ms {r.client_cpu_percent:>7.0f}% | "
        f"{r.server_late_p50_ms:>10.2f}ms {r.server_late_p99_ms:>6.2f}ms "
        f"{r.server_cpu_percent:>6.0f}%{mark}"
    )


def _accuracy(streams: int, seconds: float, note: str) -> None:
    load = Load(streams, seconds=seconds)
    print(
        f"\nclient accuracy: {streams} streams x {load.tokens} tokens at {load.itl_ms:g} ms/token "
        f"({load.events_per_s:,.0f} token events/s); error = client time - simulator write "
        f"time; {note}"
    )
    _header()
    for client in (QUANTBENCH, REFERENCE):
        _row(measure_one(load, client))


def _ceilings(seconds: float) -> list[Ceiling]:
    print(
        f"\nceiling of one client core: the most token events/s with TTFT error p50 <= "
        f"{TARGETS['ttft_p50_ms']:g} ms, p95 <= {TARGETS['ttft_p95_ms']:g} ms, ITL error p95 <= "
        f"{TARGETS['itl_p95_ms']:g} ms (the simulator writes {_CEILING_BURST} tokens, one event "
        f"each, per write, so that it is not the bottleneck; ITL error over the gaps between "
        f"writes)"
    )
    _header()
    found = []
    for client in (QUANTBENCH, REFERENCE):
        ceiling = _ceiling(client, seconds)
        found.append(ceiling)
        top = "none" if ceiling.events_per_s is None else f"{ceiling.events_per_s:,.0f}"
        print(f"  -> {_NAMES[client]}: {top} token events/s (stopped by {ceiling.stopped})")
    ours, reference = found
    if ours.events_per_s and reference.events_per_s:
        print(f"  quantbench / reference: {ours.events_per_s / reference.events_per_s:.2f}x")
    return found


def _scaling(seconds: float) -> None:
    load = Load(_SCALING_LOAD.streams, burst=_SCALING_LOAD.burst, seconds=seconds)
    print(
        f"\nprocesses: N ({load.streams} streams, {load.events_per_s:,.0f} token events/s, "
        f"{load.burst} per simulator write; N = 2 shares both cores with the simulator)"
    )
    _header()
    for processes in (1, 2):
        result = measure_one(load, QUANTBENCH, processes)
        _row(result)
        print(
            f"  -> {processes} process(es): {result.events_per_s / processes:,.0f} tokens/s per "
            f"process at {result.client_cpu_percent:.0f}% CPU each"
        )


def print_generator_speed(seconds: float, sections: Iterable[str]) -> None:
    """The generator sections of `make bench` (`accuracy`, `ceiling`, `scaling`)."""
    wanted = set(sections)
    if not pinning():
        print("\n(fewer than two cores or no taskset: server and client are not pinned)")
    if "accuracy" in wanted:
        _accuracy(64, seconds, "targets: TTFT p50 <= 1 ms, p95 <= 3 ms; ITL p95 <= 1 ms")
        _accuracy(
            256, seconds, "targets: TTFT p50 <= 1 ms, p95 <= 3 ms, ITL p95 <= 1.5 ms, "
            "generator < 70% CPU",
        )  # fmt: skip
    if "ceiling" in wanted:
        _ceilings(seconds)
    if "scaling" in wanted:
        _scaling(seconds)
