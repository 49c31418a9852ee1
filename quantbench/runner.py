"""`quantbench run`: bring up each target, drive its stages with Locust, then analyse.

Per target: start a simulator (or use the URL), wait until it serves the workload's longest
request, read its server info, run the stages, stop it. Records land in the run directory as
they are made, and run.json is rewritten as soon as each fact is known, so an error, a
signal or a `kill -9` keeps everything recorded and `--resume` finds the run as it was.

With `repeats: N` the targets take turns, each running all its stages once per turn (A, B,
C, A, B, C, …), so drift over the run hits every target alike; a target's stage numbers run
on across its repeats. Before its stages, each target's probe time tells which stages will be
extended to collect their samples, and which cannot plausibly do so within their cap.

While it runs, the run directory is locked (`quantbench.rundir.locked`); SIGTERM, SIGHUP and
Ctrl-C stop it cleanly (Locust closes the stage and writes `cancelled` for what is in
flight, children are stopped, run.json says so) and exit 2 with the `--resume` hint. A
target that goes down mid-run has its remaining stages skipped; at the end the terminal
shows every stage, the invalid ones and the verdict, and a target whose every stage is
invalid makes the run exit 2 naming the failure that dominated, in the server's words. An
error that ends the run is kept in run.json as its target's `stopped`, so a run that failed
before any stage still says why (`quantbench report` answers "no target was measured").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console

from analysis.errors import dominant_failure
from analysis.pipeline import AnalysisResult, analyze_run
from analysis.rundir import load_run_meta
from analysis.server import STACK_MAPPINGS, MetricsRecorder, sample_filter
from loadtest.config import LocustSettings
from loadtest.prompts import PromptSource, load_dataset
from loadtest.records import RequestRecord
from loadtest.replay import longest_trace_request, replay_warnings, stage_lengths_s
from loadtest.run_meta import RunMeta, TargetMeta
from loadtest.sampling import estimate_stages, request_seconds
from loadtest.secrets import auth_headers
from loadtest.sessions import load_conversations, longest_turn
from loadtest.traces import write_trace_summary
from loadtest.workload import GenRequest, longest_request, prompt_source
from quantbench import __version__
from quantbench.compose import ComposeProject
from quantbench.config import BenchConfig, TargetConfig, format_validation_error
from quantbench.errors import (
    ConfigError,
    HarnessError,
    InterruptedRun,
    NoValidStageError,
    QuantbenchError,
)
from quantbench.interrupts import Stopped
from quantbench.locustproc import TargetDown, run_locust
from quantbench.probe import (
    TINY_PROBE,
    discover_model,
    server_info,
    tokens_per_word,
    wait_until_serving,
)
from quantbench.progress import StageProgress
from quantbench.resume import finished_stages, set_aside_unfinished
from quantbench.run_quality import QualityStep
from quantbench.rundir import (
    create_run_dir,
    locked,
    nothing_measured,
    now_iso,
    versions,
    write_run_meta,
)
from quantbench.search_run import run_search, slo_limits
from quantbench.simproc import simulator
from quantbench.sweep_run import CLOSED_STAGES, run_sweep
from quantbench.telemetry import compose_project_name, failure_logs, target_telemetry
from quantbench.terminal import print_run_end

__all__ = ["RunOutcome", "resume_bench", "run_bench"]

RunOutcome = tuple[Path, AnalysisResult]


def _check_secrets(targets: list[TargetConfig]) -> None:
    for target in targets:
        if target.api_key_env and not os.environ.get(target.api_key_env):
            raise ConfigError(
                f"target {target.name}: api_key_env: environment variable "
                f"{target.api_key_env} is not set (export it, or remove api_key_env)"
            )


@contextmanager
def _endpoint(
    config: BenchConfig, target: TargetConfig, logs: Path, info: TargetMeta
) -> Iterator[str]:
    """The target's base URL for the block: a simulator, a compose service, or its `url`."""
    if target.sim is not None:
        with simulator(target.name, target.sim, logs / f"sim-{target.name}.log") as url:
            yield url
    elif target.compose is not None:
        project = ComposeProject(config.compose_file)
        service, name = target.compose, target.name
        on_failure = failure_logs(project, service, target, logs.parent)
        timeout = config.timeouts.compose_up
        with project.running(service, timeout, target=name, on_failure=on_failure) as url:
            info.compose = {
                "service": service,
                "project": compose_project_name(project),
                "image": project.image_digest(service, target=name).to_dict(),
                "resolved": project.resolved_config(service, target=name),
            }
            yield url
    else:
        with nullcontext(str(target.url).rstrip("/")) as url:
            yield url


def _longest(config: BenchConfig, prompts: PromptSource) -> GenRequest:
    """The workload's longest request: the readiness probe sends it before the stages."""
    workload = config.workload
    trace = config.replay_trace
    if trace is not None:
        return longest_trace_request(trace, workload, prompts)
    if workload.sessions is not None:
        file = workload.sessions.file
        return longest_turn(workload, prompts, load_conversations(file) if file else None)
    dataset = load_dataset(workload.dataset) if workload.dataset else None
    return longest_request(workload, prompts, dataset)


def _template_tokens(config: BenchConfig, longest: GenRequest, probe: RequestRecord) -> int:
    """Replay over the chat API: the tokens the server counted beyond the probe's prompt
    text (its chat template's), which each trace prompt then leaves room for; else 0."""
    if config.replay_trace is None or config.workload.endpoint != "chat":
        return 0
    if probe.prompt_tokens is None:
        return 0
    return max(probe.prompt_tokens - longest.prompt_tokens, 0)


def _warn_sampling(
    console: Console, config: BenchConfig, target: str, probe: RequestRecord, first: int
) -> None:
    """Before a target's stages: which will be extended for samples, which cannot make it
    (a replay's stages are never extended: which hold too few requests to be valid)."""
    trace = config.replay_trace
    if trace is not None:
        for line in replay_warnings(trace, config.load, config.sample_goal())[first:]:
            if line:
                console.print(f"  [yellow]{target}: {line}[/]", highlight=False)
        return
    request_s = request_seconds(probe, config.workload)
    for estimate in estimate_stages(config.load, config.sample_goal(), request_s)[first:]:
        line = estimate.describe(request_s)
        if line:
            colour = "yellow" if estimate.capped else "dim"
            console.print(f"  [{colour}]{target}: {line}[/]", highlight=False)


def _plain(console: Console) -> Callable[[str], None]:
    """Print a line as it is (no rich markup: server and driver messages have brackets)."""
    return lambda line: console.print(line, markup=False, highlight=False)


def _target_meta(target: TargetConfig) -> TargetMeta:
    return TargetMeta(
        name=target.name,
        stack=target.resolved_stack,
        quant=target.resolved_quant,
        simulated=target.simulated,
        api=target.api,
        url=target.url,
        sim=target.sim.model_dump(mode="json") if target.sim else None,
    )


def _run_target(
    config: BenchConfig,
    target: TargetConfig,
    run_dir: Path,
    console: Console,
    info: TargetMeta,
    save: Callable[[], None],
    first_stage: int,
    repeat: int,
    lock_fd: int,
    quality: QualityStep | None = None,
) -> None:
    """Measure one repeat of a target's stages, from `first_stage` on, filling `info` (its
    run.json entry) and saving as facts arrive; then, its stages over and it still up, its
    quality probe (`quality:`, given on its last repeat)."""
    workload, timeouts = config.workload, config.timeouts
    with _endpoint(config, target, run_dir / "logs", info) as url:
        # TGI's OpenAI routes take any other model name as a LoRA adapter (STACKS.md 2.3).
        default = "tgi" if target.resolved_stack == "tgi" else None
        model = target.model or default or discover_model(url, target.endpoint())
        endpoint = target.endpoint(model)
        console.print(f"[bold]{target.name}[/] · {url} · model {model} — waiting for a generation")
        wait_until_serving(url, endpoint, workload, timeouts, TINY_PROBE)
        info.model = model
        info.server_info = server_info(url, target.api_key_env)
        info.started_at = info.started_at or now_iso()
        info.stopped = None
        per_word = None
        if workload.tokenizer is None and workload.calibrate and workload.dataset is None:
            per_word = tokens_per_word(url, target.api, target.api_key_env)
        info.prompt_length = (
            "tokenizer" if workload.tokenizer else "calibrated" if per_word else "approximate"
        )
        info.tokens_per_word = per_word
        save()
        longest = _longest(config, prompt_source(workload, per_word))
        probe = wait_until_serving(url, endpoint, workload, timeouts, longest)
        if repeat == 0 and config.load.mode not in ("search", "sweep"):
            _warn_sampling(console, config, target.name, probe, first_stage)
        goal = config.sample_goal()
        search, sweep = config.load.search, config.load.sweep
        chosen = search is not None or sweep is not None  # stages chosen as the run goes
        settings = LocustSettings(
            endpoint=endpoint,
            workload=workload,
            # search_run and sweep_run replace these stages with the ones they choose
            load=config.load.stage_load("rate", [1.0]) if chosen else config.load,
            timeouts=timeouts,
            run_dir=run_dir,
            goal=goal,
            first_stage=first_stage,
            repeat=repeat,
            stage_offset=repeat * len(config.load.stages),
            tokens_per_word=per_word,
            template_tokens=_template_tokens(config, longest, probe),
        )
        metrics_url = target.metrics_url or f"{url}/metrics"
        info.metrics_url = metrics_url
        stack = target.resolved_stack
        keep = sample_filter(stack) if stack in STACK_MAPPINGS else None
        turn = (repeat, config.repeats)
        with (
            MetricsRecorder(
                run_dir,
                target.name,
                metrics_url,
                interval_s=1.0,
                keep=keep,
                headers=auth_headers(target.api_key_env),
            ),
            target_telemetry(
                config.telemetry, target, url, run_dir, info, save, say=_plain(console)
            ),
        ):
            if search is not None:
                run_search(
                    settings.model_copy(update={"stage_offset": 0, "first_stage": 0}),
                    search,
                    slo_limits(config.slo),
                    console,
                    lambda step, progress: run_locust(step, url, progress, keep_fds=(lock_fd,)),
                    max_schedule_lag_ms=config.analysis.max_schedule_lag_p99_ms,
                )
            elif sweep is not None:
                run_sweep(
                    settings.model_copy(update={"first_stage": 0}),
                    sweep,
                    console,
                    lambda step, progress: run_locust(step, url, progress, keep_fds=(lock_fd,)),
                    first_stage,
                )
            else:
                with StageProgress(
                    console, target.name, config.load, goal, first_stage, turn, _lengths(config)
                ) as progress:
                    run_locust(settings, url, progress, keep_fds=(lock_fd,))
        info.ended_at = now_iso()
        if quality is not None:  # after the stages: never while one is measured
            quality.after_stages(target, url, model)


def _lengths(config: BenchConfig) -> list[float] | None:
    trace = config.replay_trace
    return stage_lengths_s(trace, config.load) if trace is not None else None


def _resume_hint(run_dir: Path, meta: RunMeta) -> str:
    if nothing_measured(run_dir, meta) is not None:
        return (
            f"no target was measured: {run_dir} keeps only run.json, with the reason "
            f"(`quantbench run --resume {run_dir}` once it is fixed, or delete it)"
        )
    return (
        f"what was recorded is kept in {run_dir} (`quantbench report {run_dir}`, "
        f"or `quantbench run --resume {run_dir}`)"
    )


def _unanswered(result: AnalysisResult, meta: RunMeta, names: list[str]) -> None:
    """Exit 2 (NoValidStageError) if a target has no valid stage: the run cannot answer for
    it. The line names the failure that dominated, in the server's own words."""
    summary = result.summary
    problems = []
    for name in names:
        rows = summary[summary["target"] == name]
        if len(rows) and rows["valid"].astype(bool).any():
            continue
        info = meta.target(name)
        breakdown = result.breakdown
        failed = breakdown[breakdown["target"] == name] if breakdown is not None else None
        requests = int(rows["requests"].sum()) if len(rows) else 0
        dominant = dominant_failure(failed, requests) if failed is not None else None
        why = dominant or (str(rows["invalid_reason"].iloc[0]) if len(rows) else "no stage ran")
        stopped = f" ({info.stopped})" if info is not None and info.stopped else ""
        problems.append(f"target {name}: no valid stage: {why}{stopped}")
    if problems:
        raise NoValidStageError("; ".join(problems) + f" (report: {result.report_html})")


_SEARCH_STAGES = 1_000_000


def _stages_per_repeat(config: BenchConfig) -> int:
    """A search runs as many stages as it needs (`quantbench.search_run` resumes it); a
    sweep its closed-loop pair and its rates."""
    if config.load.sweep is not None:
        return CLOSED_STAGES + config.load.sweep.rates
    return len(config.load.stages) if config.load.mode != "search" else _SEARCH_STAGES


def _measure(
    config: BenchConfig,
    targets: list[TargetConfig],
    run_dir: Path,
    meta: RunMeta,
    console: Console,
    finished: dict[str, int],
    lock_fd: int,
) -> RunOutcome:
    """Run each target's unfinished stages, repeats interleaved (`finished`: how many of a
    target's stages, counted across its repeats, are already done), keeping run.json
    current; analyse, show the end of the run."""
    console.print(f"run directory: {run_dir}")
    trace = config.replay_trace
    if trace is not None:
        assert config.workload.trace is not None
        write_trace_summary(run_dir, trace, config.workload.trace.block_size)

    def save() -> None:
        write_run_meta(run_dir, meta)

    count = _stages_per_repeat(config)
    quality = QualityStep.for_run(config, targets, run_dir, console)
    down: set[str] = set()
    try:
        for repeat in range(config.repeats):
            step = quality if repeat == config.repeats - 1 else None  # once, after the last
            for target in targets:
                info = meta.target(target.name)
                if info is None:
                    info = _target_meta(target)
                    meta.targets.append(info)
                    save()
                if target.name in down:
                    continue
                first = finished.get(target.name, 0) - repeat * count
                if first >= count:
                    if step is not None and step.pending(target.name):
                        endpoint = _endpoint(config, target, run_dir / "logs", info)
                        step.probe_alone(target, endpoint)
                    continue
                try:
                    _run_target(
                        config, target, run_dir, console, info, save, max(first, 0), repeat,
                        lock_fd, step,
                    )  # fmt: skip
                except TargetDown as exc:
                    info.stopped = str(exc)
                    down.add(target.name)
                    console.print(f"[red]{exc}[/]")
                except QuantbenchError as exc:  # it ends the run: run.json keeps why
                    info.stopped = str(exc)
                    raise
                save()
    except (Stopped, KeyboardInterrupt) as exc:  # Stopped: see quantbench.interrupts
        meta.interrupted = exc.name if isinstance(exc, Stopped) else "SIGINT"
        raise InterruptedRun(
            f"interrupted by {meta.interrupted}; {_resume_hint(run_dir, meta)}"
        ) from None
    except QuantbenchError as exc:
        raise HarnessError(f"{exc}; {_resume_hint(run_dir, meta)}") from exc
    finally:
        meta.ended_at = now_iso()
        save()
    console.print("analysing…")
    result = analyze_run(run_dir)
    print_run_end(console, result.summary, result.comparison, result.headline, config.slo)
    _unanswered(result, meta, [t.name for t in targets])
    return run_dir, result


def run_bench(
    config: BenchConfig,
    out_dir: Path,
    only: list[str] | None = None,
    console: Console | None = None,
) -> RunOutcome:
    console = console or Console()
    names = [target.name for target in config.targets]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ConfigError(
            f"--target {', '.join(unknown)}: no such target (have: {', '.join(names)})"
        )
    targets = [t for t in config.targets if not only or t.name in only]
    _check_secrets(targets)
    run_dir = create_run_dir(out_dir, config.name)
    with locked(run_dir) as lock_fd:
        meta = RunMeta(
            run_id=run_dir.name,
            name=config.name,
            quantbench_version=__version__,
            versions=versions(),
            started_at=now_iso(),
            seeds={"workload": config.workload.seed},
            config=config.model_dump(mode="json"),
            selected_targets=[t.name for t in targets],
            targets=[_target_meta(t) for t in targets],
        )
        write_run_meta(run_dir, meta)
        return _measure(config, targets, run_dir, meta, console, {}, lock_fd)


def _resume_line(finished: dict[str, int], per_repeat: int, repeats: int, moved: int) -> str:
    count = per_repeat * repeats
    parts = []
    for name, done in finished.items():
        if done >= count:
            parts.append(f"{name}: all {count} stages finished")
        elif repeats > 1:
            repeat, stage = divmod(done, per_repeat)
            parts.append(f"{name} from repeat {repeat + 1}, stage {stage + 1} of {per_repeat}")
        elif per_repeat == _SEARCH_STAGES:
            parts.append(f"{name} from search step {done + 1}")
        else:
            parts.append(f"{name} from stage {done + 1} of {count}")
    return f"resuming: {', '.join(parts)} ({moved} records of unfinished stages set aside)"


def resume_bench(run_dir: Path, console: Console | None = None) -> RunOutcome:
    """Finish a run that was killed: skip finished stages, rerun the rest (see resume.py)."""
    console = console or Console()
    meta = load_run_meta(run_dir)
    try:
        config = BenchConfig.model_validate(meta.config)
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(f"{run_dir / 'run.json'}: config (cannot resume)", exc)
        ) from exc
    selected = meta.selected_targets or [t.name for t in config.targets]
    targets = [t for t in config.targets if t.name in selected]
    _check_secrets(targets)
    with locked(run_dir) as lock_fd:
        per_repeat = _stages_per_repeat(config)
        count = per_repeat * config.repeats  # stage numbers run on across repeats
        finished = finished_stages(run_dir, {t.name: count for t in targets})
        moved = set_aside_unfinished(run_dir, finished)
        console.print(_resume_line(finished, per_repeat, config.repeats, moved))
        meta.resumed_at.append(now_iso())
        meta.interrupted = None
        meta.ended_at = None
        write_run_meta(run_dir, meta)
        return _measure(config, targets, run_dir, meta, console, finished, lock_fd)
