"""`quantbench run`: bring up each target, drive its stages with Locust, then analyse.

Per target: start a simulator (or use the URL), wait until it really generates, read its
server info, run the stages, stop it. Records land in the run directory as they are made,
so an error or Ctrl-C on one target keeps everything recorded before it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from analysis.pipeline import AnalysisResult, analyze_run
from analysis.rundir import load_run_meta
from analysis.server import STACK_MAPPINGS, MetricsRecorder, sample_filter
from loadtest.config import LocustSettings
from loadtest.shapes import LoadPlan
from quantbench import __version__
from quantbench.compose import ComposeProject
from quantbench.config import BenchConfig, TargetConfig
from quantbench.errors import ConfigError, HarnessError, QuantbenchError
from quantbench.locustproc import LocustProgress, run_locust
from quantbench.probe import first_model, server_info, tokens_per_word, wait_until_generating
from quantbench.resume import finished_stages, set_aside_unfinished
from quantbench.rundir import create_run_dir, now_iso, versions, write_run_meta
from quantbench.simproc import simulator

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
    config: BenchConfig, target: TargetConfig, logs: Path, info: dict[str, Any]
) -> Iterator[str]:
    """The target's base URL for the block: a simulator, a compose service, or its `url`."""
    if target.sim is not None:
        with simulator(target.name, target.sim, logs / f"sim-{target.name}.log") as url:
            yield url
    elif target.compose is not None:
        project = ComposeProject(config.compose_file)
        service, name = target.compose, target.name
        with project.running(service, config.timeouts.compose_up, target=name) as url:
            info["compose"] = {
                "service": service,
                "image": project.image_digest(service, target=name).to_dict(),
                "resolved": project.resolved_config(service, target=name),
            }
            yield url
    else:
        with nullcontext(str(target.url).rstrip("/")) as url:
            yield url


_LOAD_UNITS = {"concurrency": "users", "rate": "requests/s", "batch": "requests per batch"}


class _Progress:
    """One line per stage change, and a live status line when stdout is a terminal."""

    def __init__(self, console: Console, target: str, plan: LoadPlan, stage_count: int) -> None:
        self._console = console
        self._target = target
        self._plan = plan
        self._count = stage_count
        self._stage = -1

    def __call__(self, progress: LocustProgress) -> None:
        stage = self._plan.stage_at(progress.elapsed_s)
        if stage is not None and stage.index != self._stage:
            self._stage = stage.index
            self._console.print(
                f"  {self._target}: stage {stage.index + 1}/{self._count} · {stage.load:g} "
                f"{_LOAD_UNITS[self._plan.mode]} · {stage.end_s - stage.start_s:.0f} s"
            )
        if self._console.is_terminal:
            left = max(self._plan.total_s - progress.elapsed_s, 0)
            self._console.print(
                f"    {progress.requests} requests · {progress.errors} errors · {left:.0f} s left",
                end="\r",
            )


def _target_info(target: TargetConfig) -> dict[str, Any]:
    return {
        "name": target.name,
        "stack": target.resolved_stack,
        "quant": target.resolved_quant,
        "simulated": target.simulated,
        "api": target.api,
        "url": target.url,
        "sim": target.sim.model_dump(mode="json") if target.sim else None,
    }


def _run_target(
    config: BenchConfig,
    target: TargetConfig,
    run_dir: Path,
    console: Console,
    info: dict[str, Any],
    first_stage: int = 0,
) -> None:
    """Measure one target, filling `info` (a run.json entry) as facts become known."""
    with _endpoint(config, target, run_dir / "logs", info) as url:
        # TGI's OpenAI routes take any other model name as a LoRA adapter (STACKS.md 2.3).
        default = "tgi" if target.resolved_stack == "tgi" else first_model(url)
        model = target.model or default
        endpoint = target.endpoint(model)
        console.print(f"[bold]{target.name}[/] · {url} · model {model} — waiting for a generation")
        wait_until_generating(url, endpoint, config.workload.endpoint, config.timeouts.ready)
        info.update(model=model, server_info=server_info(url), started_at=now_iso())
        workload = config.workload
        per_word = None
        if workload.tokenizer is None and workload.calibrate and workload.dataset is None:
            per_word = tokens_per_word(url, target.api)
        info["prompt_length"] = (
            "tokenizer" if workload.tokenizer else "calibrated" if per_word else "approximate"
        )
        info["tokens_per_word"] = per_word
        settings = LocustSettings(
            endpoint=endpoint,
            workload=config.workload,
            load=config.load,
            timeouts=config.timeouts,
            run_dir=run_dir,
            first_stage=first_stage,
            tokens_per_word=per_word,
        )
        plan = LoadPlan(config.load, first_stage)
        progress = _Progress(console, target.name, plan, len(config.load.stages))
        metrics_url = target.metrics_url or f"{url}/metrics"
        info["metrics_url"] = metrics_url
        stack = target.resolved_stack
        keep = sample_filter(stack) if stack in STACK_MAPPINGS else None
        with MetricsRecorder(run_dir, target.name, metrics_url, interval_s=1.0, keep=keep):
            run_locust(settings, url, progress)
        info["ended_at"] = now_iso()


def _measure(
    config: BenchConfig,
    targets: list[TargetConfig],
    run_dir: Path,
    meta: dict[str, Any],
    console: Console,
    first_stages: dict[str, int],
) -> RunOutcome:
    """Run each target from its first unfinished stage, keeping run.json current; analyse."""
    console.print(f"run directory: {run_dir}")
    entries = {entry["name"]: entry for entry in meta["targets"]}
    try:
        for target in targets:
            first = first_stages.get(target.name, 0)
            if first >= len(config.load.stages):
                console.print(f"{target.name}: all stages already finished")
                continue
            info = entries.get(target.name) or _target_info(target)
            if target.name not in entries:
                meta["targets"].append(info)
            _run_target(config, target, run_dir, console, info, first)
            write_run_meta(run_dir, meta)
    except QuantbenchError as exc:
        raise HarnessError(
            f"{exc}; what was recorded is kept in {run_dir} (`quantbench report {run_dir}`, "
            f"or `quantbench run --resume {run_dir}`)"
        ) from exc
    finally:
        meta["ended_at"] = now_iso()
        write_run_meta(run_dir, meta)
    console.print("analysing…")
    return run_dir, analyze_run(run_dir)


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
    meta: dict[str, Any] = {
        "run_id": run_dir.name,
        "name": config.name,
        "quantbench_version": __version__,
        "versions": versions(),
        "started_at": now_iso(),
        "ended_at": None,
        "seeds": {"workload": config.workload.seed},
        "config": config.model_dump(mode="json"),
        "selected_targets": [t.name for t in targets],
        "targets": [],
    }
    write_run_meta(run_dir, meta)
    return _measure(config, targets, run_dir, meta, console, {})


def resume_bench(run_dir: Path, console: Console | None = None) -> RunOutcome:
    """Finish a run that was killed: skip finished stages, rerun the rest (see resume.py)."""
    console = console or Console()
    meta = load_run_meta(run_dir)
    try:
        config = BenchConfig.model_validate(meta["config"])
    except (KeyError, ValidationError) as exc:
        raise ConfigError(f"{run_dir / 'run.json'}: no usable config to resume from") from exc
    selected = meta.get("selected_targets") or [t.name for t in config.targets]
    targets = [t for t in config.targets if t.name in selected]
    _check_secrets(targets)
    stage_count = len(config.load.stages)
    finished = finished_stages(run_dir, {t.name: stage_count for t in targets})
    moved = set_aside_unfinished(run_dir, finished)
    console.print(
        "resuming: "
        + ", ".join(f"{name} from stage {done + 1}" for name, done in finished.items())
        + f" ({moved} records of unfinished stages set aside)"
    )
    meta.setdefault("resumed_at", []).append(now_iso())
    return _measure(config, targets, run_dir, meta, console, finished)
