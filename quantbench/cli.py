"""The `quantbench` command line: parse, compose the parts, map errors to exit codes.

Exit codes: 0 ok; 1 a threshold or regression failed; 2 invalid run, bad input or harness
error — one clear line on stderr, never a traceback for a user mistake.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from rich.console import Console

from analysis.compare import Comparison
from analysis.pipeline import AnalysisResult, analyze_run
from analysis.plan import PlanInputError, parse_number, parse_slo, plan_inputs
from analysis.rundir import load_run_meta
from analysis.speed_quality import load_quality
from analysis.traffic import production_rate
from loadtest.traces.stats import read_trace_summary
from quantbench import __version__
from quantbench.compare_cli import add_compare_parser, run_compare
from quantbench.config import load_config
from quantbench.doctor import add_parser as add_doctor_parser
from quantbench.doctor import run_doctor
from quantbench.errors import (
    EXIT_ERROR,
    EXIT_OK,
    ConfigError,
    InputError,
    NoValidStageError,
    QuantbenchError,
    ThresholdError,
    one_line,
    translated,
)
from quantbench.history_cli import add_history_parser, run_history
from quantbench.interrupts import Stopped, stop_on_signals
from quantbench.quality_cli import BAR_HELP, add_quality_parser, parse_bar, run_quality_command
from quantbench.rundir import nothing_measured
from quantbench.runner import resume_bench, run_bench
from quantbench.terminal import make_console, unmet_targets
from quantbench.tracecmd import add_trace_parser, run_trace

__all__ = ["build_parser", "main"]

_EPILOG = """\
examples:
  quantbench demo                       simulated vLLM AWQ/GPTQ/FP16, no GPU needed
  quantbench run bench.yaml             measure the targets in bench.yaml
  quantbench run bench.yaml --target vllm-awq --out nightly/
  quantbench sim --stack vllm --quant awq --port 8000
  quantbench report runs/20261126T120000Z-bench
  quantbench plan runs/20261126T120000Z-bench --peak-rps 40 --gpu-hour-cost 2.5
  quantbench trace describe examples/traces/synthetic_mooncake.jsonl --out plots/
  quantbench compare runs/last-good runs/tonight --junit compare.xml
  quantbench history runs/nightly/

`run` prints the run directory last (requests.jsonl, stages.jsonl, summary.csv,
report.md, report.html); `demo` and `report` print the path of report.html last.
Metric definitions: README.md, "What the numbers mean".
"""


_RUN_HELP = """Measure every target of a bench.yaml, stage by stage, then analyse: prints each
stage as it starts, and at the end a table of every target x stage, the invalid stages, the
targets that met the SLO nowhere, and the verdict; the run directory's path comes last.

A stage runs for its stage_duration and on until it holds the ok samples its SLO
percentile needs (59 for a p95), at most load.max_stage_duration (10 minutes by default).

load.mode: search chooses its own rate stages: it brackets, then bisects, the highest
open-loop rate that meets the slo (to load.search.precision, ±5% by default), ending a
stage early once its SLO verdict is clear; the answer (rate ± half-width) is the target's
capacity, and search.jsonl and the report show the path. load.mode: sweep runs one user,
then load.sweep.max_concurrency users, then load.sweep.rates open-loop stages between the
two rates they reached (guidellm's sweep). See docs/search-and-sweep.md.

exit codes: 0 the run answered (invalid stages are unknown, not failures: a sweep whose
top stage breaks down is a normal result); 1 --fail-on-slo was given and a target met the
SLO at no valid stage; 2 the run cannot answer (a target with no valid stage), bad input,
a harness failure or an interruption (Ctrl-C: the line says how to --resume).
"""


def _add_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs"),
        help="folder for the run directory (default: runs/)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantbench",
        description="Load-test LLM serving stacks (vLLM, TGI, ExLlamaV2) and quantizations "
        "(AWQ, GPTQ, EXL2, FP16): p50/p95 latency and throughput, measured on your own stack.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"quantbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the benchmark described by a bench.yaml",
        description=_RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "config", type=Path, nargs="?", help="bench.yaml: targets, workload, load, slo"
    )
    run.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="finish a killed run: skip its finished stages, rerun the rest",
    )
    _add_out(run)
    run.add_argument(
        "--target", action="append", metavar="NAME", help="run only this target (repeatable)"
    )
    run.add_argument(
        "--fail-on-slo",
        nargs="?",
        const="",
        metavar="NAMES",
        help="exit 1 when a target meets the SLO at none of its valid stages; "
        "--fail-on-slo=a,b checks only those targets (default: every target run)",
    )

    demo = commands.add_parser("demo", help="run a short sweep on simulated stacks (no GPU needed)")
    _add_out(demo)

    commands.add_parser(
        "sim",
        help="start a simulated serving stack (see `quantbench sim --help`)",
        add_help=False,
    )

    report = commands.add_parser("report", help="(re)build summary.csv and the reports of a run")
    report.add_argument("run_dir", type=Path, help="a run directory written by `quantbench run`")
    report.add_argument(
        "--max-ppl-increase",
        metavar="PCT",
        help=BAR_HELP + "; the report's speed-quality decision and plan section use it for "
        "this rebuild (default: the bar of `quantbench plan`, else quality.max_ppl_increase)",
    )
    _add_plan(commands)
    add_trace_parser(commands)
    add_doctor_parser(commands)
    add_quality_parser(commands)
    add_compare_parser(commands)
    add_history_parser(commands)
    return parser


_PLAN_HELP = """From one run: each target's highest request rate per replica (GPU) within the SLO,
interpolated between the last stage that met it and the first that did not; the GPUs a
peak needs, ceil(peak / (rate x (1 - headroom))); and the cost per million output tokens,
GPU-hour cost / (output tok/s at that rate x 3600) x 1e6; with GPU telemetry, the GPU's
energy there: joules per output token, output tokens per joule and, with --kwh-cost, the
electricity cost per million output tokens beside the GPU-hour cost. Prints the plan,
writes plan.json and plan.md to the run directory, rebuilds its report with a plan section,
and prints the path of plan.md last. Later `quantbench report` runs keep these inputs.

examples:
  quantbench plan runs/RUN --slo ttft_p95=500ms,tpot_p95=50ms --peak-rps 40
  quantbench plan runs/RUN --peak-rps 40 --gpu-hour-cost 2.5 --headroom 0.3
  quantbench plan runs/RUN --gpu-hour-cost 2.5 --kwh-cost 0.15
  quantbench plan runs/REPLAY --growth 3        # a replayed trace's traffic grown 3x

With --max-ppl-increase (or quality.max_ppl_increase in the run's config), targets
that miss the accuracy bar, are uncertain against it or not measurable (quality.json, from
`quality:` in bench.yaml) are excluded from the cheapest choice, and plan.md says why.

exit codes: 0 a plan was made; 1 no target meets the SLO (and the accuracy bar) at any
valid stage; 2 a bad flag, not a run directory, or a bar without quality.json (one line on
stderr).
"""


def _add_plan(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = commands.add_parser(
        "plan",
        help="GPUs and cost per output token for a peak request rate, from a run",
        description=_PLAN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plan.add_argument("run_dir", type=Path, help="a run directory written by `quantbench run`")
    plan.add_argument(
        "--slo",
        metavar="OBJECTIVES",
        help="p95 limits, comma-separated: ttft_p95, tpot_p95, e2e_p95 in ms or s, e.g. "
        "ttft_p95=500ms,tpot_p95=50ms (only those given apply; default: the run's `slo`)",
    )
    plan.add_argument(
        "--peak-rps",
        metavar="N",
        help="peak request rate to serve, in requests/s, e.g. 40 (without it: no GPU count)",
    )
    plan.add_argument(
        "--growth",
        metavar="N",
        help="replay runs: the peak is the trace's traffic grown N times (its own mean rate, "
        "before speedup and sampling, x N), e.g. 3; instead of --peak-rps",
    )
    plan.add_argument(
        "--gpu-hour-cost",
        metavar="PRICE",
        help="price of one GPU-hour in your currency, e.g. 2.5 "
        "(without it: output tokens per GPU-hour instead of a cost)",
    )
    plan.add_argument(
        "--kwh-cost",
        metavar="PRICE",
        help="price of one kWh of electricity, e.g. 0.15: adds the GPU's energy cost per "
        "million output tokens (default: the config's analysis.kwh_cost, if any)",
    )
    plan.add_argument(
        "--headroom",
        metavar="FRACTION",
        default="0.2",
        help="share of each replica's SLO-limited rate kept spare for bursts, "
        "0 <= h < 1, e.g. 0.2 or 20%% (default: 0.2)",
    )
    plan.add_argument(
        "--max-ppl-increase",
        metavar="PCT",
        help=BAR_HELP + "; targets that miss it, are uncertain or not measurable are excluded "
        "(kept in plan.json for later reports; default: quality.max_ppl_increase)",
    )


def _growth_peak(run_dir: Path, growth: float, peak: float | None) -> float:
    """`--growth N`: N × the replayed trace's own mean rate, from the run's trace.json."""
    if peak is not None:
        raise ConfigError("--growth and --peak-rps both set the peak: give one of them")
    if growth <= 0:
        raise ConfigError(f"--growth: {growth:g} is not above 0; e.g. 3 for 3x the traffic")
    meta = load_run_meta(run_dir)  # not a run directory: that error first
    summary = read_trace_summary(run_dir)
    trace = (meta.config.get("workload") or {}).get("trace")
    if summary is None or not isinstance(trace, dict):
        raise ConfigError(
            f"--growth: {run_dir} replayed no trace (no trace.json); give --peak-rps instead"
        )
    return growth * production_rate(summary, trace)


def _refuse_unmeasured(run_dir: Path) -> None:
    """A run that failed before its first stage has no report: one line with the reason."""
    why = nothing_measured(run_dir, load_run_meta(run_dir))
    if why is not None:
        raise InputError(
            f"{run_dir}: no target was measured: {why} "
            f"(`quantbench run --resume {run_dir}` once it is fixed)"
        )


def _check_quality(run_dir: Path, bar: float | None) -> None:
    """A bar given on the command line needs the run's quality.json, with an FP16 reference."""
    if bar is None:
        return
    load_run_meta(run_dir)  # not a run directory: that error first
    quality = load_quality(run_dir)
    if quality is None:
        raise ConfigError(
            f"--max-ppl-increase: {run_dir} has no quality.json; add a `quality:` section to "
            "bench.yaml (probed after each target's stages), or copy there the quality.json "
            "that `quantbench quality` wrote"
        )
    if quality.get("reference") is None:
        raise ConfigError(
            f"--max-ppl-increase: {run_dir}/quality.json has no FP16 reference (a target with "
            "quant fp16, or quality.reference), so no perplexity change to judge"
        )


def _plan(args: argparse.Namespace) -> int:
    """Validate the flags (one ConfigError line each), plan, print the plan and its path."""
    bar = parse_bar(args.max_ppl_increase)
    try:
        growth = parse_number("--growth", args.growth) if args.growth else None
        peak = parse_number("--peak-rps", args.peak_rps) if args.peak_rps else None
        if growth is not None:
            peak = _growth_peak(args.run_dir, growth, peak)
        inputs = plan_inputs(
            slo=parse_slo(args.slo) if args.slo is not None else None,
            peak_rps=peak,
            growth=growth,
            gpu_hour_cost=(
                parse_number("--gpu-hour-cost", args.gpu_hour_cost, example="2.5")
                if args.gpu_hour_cost
                else None
            ),
            headroom=parse_number("--headroom", args.headroom, percent=True),
            max_ppl_increase=bar,
            kwh_cost=parse_number("--kwh-cost", args.kwh_cost, example="0.15")
            if args.kwh_cost
            else None,
        )
    except PlanInputError as exc:
        raise ConfigError(str(exc)) from exc
    _check_quality(args.run_dir, bar)
    result = analyze_run(args.run_dir, inputs)
    _warn(result)
    assert result.plan is not None and result.plan_md is not None
    print(result.plan_md.read_text())
    print(result.plan_md)
    if not any(t.capacity.measured for t in result.plan.targets):
        raise NoValidStageError(
            "no target has a valid stage, so none could be planned "
            f"(see the stage validity table of {result.report_md})"
        )
    if result.plan.cheapest is None:
        both = "the SLO and the accuracy bar" if result.plan.excluded else "the SLO"
        raise ThresholdError(f"no target meets {both} at any valid stage ({result.plan_md})")
    return EXIT_OK


def _warn(result: AnalysisResult) -> None:
    """Damage found in the run's files (e.g. corrupt lines skipped), one line each."""
    for warning in result.warnings:
        print(f"quantbench: warning: {warning}", file=sys.stderr)


def _demo_config() -> Path:
    return Path(str(resources.files("quantbench") / "examples" / "demo.yaml"))


def _slo_names(flag: str | None, names: list[str]) -> list[str] | None:
    """The targets `--fail-on-slo` holds to the SLO (None: the flag was not given)."""
    if flag is None:
        return None
    asked = [name.strip() for name in flag.split(",") if name.strip()] or names
    unknown = sorted(set(asked) - set(names))
    if unknown:
        raise ConfigError(
            f"--fail-on-slo: {', '.join(unknown)}: no such target (have: {', '.join(names)})"
        )
    return asked


def _enforce_slo(names: list[str] | None, comparison: Comparison | None, report: Path) -> None:
    """`--fail-on-slo`: exit 1 (ThresholdError) when one of `names` met the SLO nowhere."""
    if names is None or comparison is None:
        return
    never, _ = unmet_targets(comparison)
    failed = [name for name in never if name in names]
    if failed:
        raise ThresholdError(
            f"--fail-on-slo: {', '.join(failed)} met the SLO at no valid stage ({report})"
        )


def _run(
    config_path: Path,
    out: Path,
    only: list[str] | None,
    console: Console,
    *,
    demo: bool = False,
    fail_on_slo: str | None = None,
) -> int:
    """Run, then print the run directory last (`run`) or the report's path last (`demo`)."""
    config = load_config(config_path)
    enforce = _slo_names(
        fail_on_slo, [t.name for t in config.targets if not only or t.name in only]
    )
    run_dir, result = run_bench(config, out, only, console)
    _warn(result)
    console.print(f"summary: {result.summary_csv}")
    console.print(f"report:  {result.report_md}")
    _enforce_slo(enforce, result.comparison, result.report_md)
    print(result.report_html if demo else run_dir)
    return EXIT_OK


def _dispatch(args: argparse.Namespace, console: Console) -> int:
    if args.command == "run":
        if args.resume is not None:
            if args.config is not None:
                raise ConfigError("run: give a bench.yaml or --resume RUN_DIR, not both")
            selected = load_run_meta(args.resume).selected_targets
            enforce = _slo_names(args.fail_on_slo, selected)
            run_dir, result = resume_bench(args.resume, console)
            console.print(f"report:  {result.report_md}")
            _enforce_slo(enforce, result.comparison, result.report_md)
            print(run_dir)
            return EXIT_OK
        if args.config is None:
            raise ConfigError("run: give a bench.yaml, or --resume RUN_DIR")
        return _run(args.config, args.out, args.target, console, fail_on_slo=args.fail_on_slo)
    if args.command == "demo":
        return _run(_demo_config(), args.out, None, console, demo=True)
    if args.command == "report":
        _refuse_unmeasured(args.run_dir)
        bar = parse_bar(args.max_ppl_increase)
        _check_quality(args.run_dir, bar)
        result = analyze_run(args.run_dir, max_ppl_increase=bar)
        _warn(result)
        print(result.report_html)
        return EXIT_OK
    if args.command == "plan":
        return _plan(args)
    if args.command == "trace":
        return run_trace(args, console)
    if args.command == "doctor":
        return run_doctor(args, console)
    if args.command == "quality":
        return run_quality_command(args, console)
    if args.command == "compare":
        return run_compare(args, console)
    if args.command == "history":
        return run_history(args, console)
    raise ConfigError(f"unknown command {args.command!r}")


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error meant for the user is caught here, once (errors.py)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:
        from services.sim.__main__ import main as sim_main

        return sim_main(argv[1:], prog="quantbench sim")
    args = build_parser().parse_args(argv)
    console = make_console()
    try:
        with stop_on_signals(), translated():
            return _dispatch(args, console)
    except QuantbenchError as exc:
        print(f"quantbench: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except (Stopped, KeyboardInterrupt) as exc:
        name = exc.name if isinstance(exc, Stopped) else "SIGINT"
        print(f"quantbench: interrupted by {name}; files written so far are kept", file=sys.stderr)
        return EXIT_ERROR
