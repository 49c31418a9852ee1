"""The Locust adapter: virtual users call the protocol client and write one record per request.

Works with plain Locust:

    locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8000 \\
        --qb-stages 1,4,16 --qb-stage-duration 20s --qb-run-dir runs/manual

`quantbench run` passes `--qb-settings FILE` (a `LocustSettings` JSON) instead. Records go
to `<run dir>/requests.jsonl` (flushed per request) and stage windows to `stages.jsonl`.
TTFT/TPOT/E2E are also fired as Locust request events so the web UI and CSVs show them,
with each request's failure counted once, on its endpoint row.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from gevent import GreenletExit
from locust import LoadTestShape, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.exception import StopUser

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # plain `locust -f` from a clone

from loadtest.clients.openai import OpenAIClient, RequestContext
from loadtest.config import LocustSettings, WorkloadConfig, parse_duration
from loadtest.locust_transport import LocustTransport
from loadtest.records import (
    REQUESTS_FILE,
    STAGES_FILE,
    Outcome,
    RecordWriter,
    RequestRecord,
    StageRecord,
)
from loadtest.shapes import ConcurrencySteps, StagePlan
from loadtest.workload import RequestFactory

log = logging.getLogger("quantbench")


class _Run:
    """State shared by the users, the shape and the listeners of one Locust process."""

    settings: LocustSettings = LocustSettings()
    steps: ConcurrencySteps = ConcurrencySteps(settings.load)
    requests: RecordWriter | None = None
    stages: RecordWriter | None = None
    anchor_s: float = 0.0
    anchor_wall_s: float = 0.0
    stages_written: int = 0
    user_ids = itertools.count()


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("quantbench")
    group.add_argument("--qb-settings", help="LocustSettings JSON written by `quantbench run`")
    group.add_argument("--qb-run-dir", help="run directory for requests.jsonl and stages.jsonl")
    group.add_argument("--qb-stages", help="comma-separated user counts, e.g. 1,4,16")
    group.add_argument("--qb-stage-duration", help="measured time per stage, e.g. 30s")
    group.add_argument("--qb-warmup", help="warm-up before each stage, excluded, e.g. 5s")
    group.add_argument("--qb-endpoint", choices=["chat", "completions"])
    group.add_argument("--qb-model", help="model name to request (default: first of /v1/models)")
    group.add_argument("--qb-stack", choices=["vllm", "tgi", "exllamav2", "other"])
    group.add_argument("--qb-target", help="target name written into each record")
    group.add_argument("--qb-prompt-tokens", type=int)
    group.add_argument("--qb-output-tokens", type=int)


def settings_from_options(options: Any) -> LocustSettings:
    """Build settings from `--qb-settings`, then apply any individual `--qb-*` flag on top."""
    if options.qb_settings:
        base = LocustSettings.model_validate_json(Path(options.qb_settings).read_text())
    else:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        base = LocustSettings(run_dir=Path("runs") / f"{stamp}-locust")
    data = base.model_dump()
    if options.qb_run_dir:
        data["run_dir"] = options.qb_run_dir
    load, workload, endpoint = data["load"], data["workload"], data["endpoint"]
    if options.qb_stages:
        load["stages"] = [int(users) for users in options.qb_stages.split(",")]
    if options.qb_stage_duration:
        load["stage_duration"] = parse_duration(options.qb_stage_duration)
    if options.qb_warmup:
        load["warmup"] = parse_duration(options.qb_warmup)
    if options.qb_endpoint:
        workload["endpoint"] = options.qb_endpoint
    if options.qb_prompt_tokens:
        workload["prompt_tokens"] = options.qb_prompt_tokens
    if options.qb_output_tokens:
        workload["output_tokens"] = options.qb_output_tokens
    for flag in ("model", "stack"):
        value = getattr(options, f"qb_{flag}")
        if value:
            endpoint[flag] = value
    if options.qb_target:
        endpoint["name"] = options.qb_target
    return LocustSettings.model_validate(data)


def _first_model(host: str) -> str:
    response = httpx.get(f"{host.rstrip('/')}/v1/models", timeout=10.0)
    response.raise_for_status()
    return str(response.json()["data"][0]["id"])


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    settings = settings_from_options(options)
    if settings.endpoint.model is None and environment.host:
        try:
            model = _first_model(environment.host)
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            log.error("could not read the model name from %s/v1/models: %s", environment.host, exc)
            raise SystemExit(2) from exc
        settings = settings.model_copy(
            update={"endpoint": settings.endpoint.model_copy(update={"model": model})}
        )
    if not options.stop_timeout:
        # Let requests scheduled inside the last stage finish (the drain) instead of being
        # killed and counted `cancelled`; an explicit --stop-timeout wins.
        environment.stop_timeout = settings.load.drain_timeout
    _Run.settings = settings
    _Run.steps = ConcurrencySteps(settings.load)
    _Run.requests = RecordWriter(settings.run_dir / REQUESTS_FILE)
    _Run.stages = RecordWriter(settings.run_dir / STAGES_FILE)


def _write_stages(until_s: float, completed: bool) -> None:
    """Append the window of every stage that ended before `until_s` and is not yet written."""
    if _Run.stages is None:
        return
    for stage in _Run.steps.stages[_Run.stages_written :]:
        if stage.end_s > until_s and completed:
            return
        end_s = min(stage.end_s, until_s)
        if end_s <= stage.start_s:
            return
        _Run.stages.write(_stage_record(stage, end_s, completed=stage.end_s <= until_s))
        _Run.stages_written += 1


def _stage_record(stage: StagePlan, end_s: float, completed: bool) -> StageRecord:
    endpoint = _Run.settings.endpoint
    return StageRecord(
        target=endpoint.name,
        stage=stage.index,
        mode="concurrency",
        load=stage.load,
        warmup_s=stage.measure_start_s - stage.start_s,
        start_wall_s=_Run.anchor_wall_s + stage.start_s,
        end_wall_s=_Run.anchor_wall_s + end_s,
        start_ns=int((_Run.anchor_s + stage.start_s) * 1e9),
        end_ns=int((_Run.anchor_s + end_s) * 1e9),
        completed=completed,
    )


@events.test_stop.add_listener
def _on_stop(environment: Environment, **_: Any) -> None:
    _write_stages(time.perf_counter() - _Run.anchor_s, completed=False)


class StagesShape(LoadTestShape):
    """Steps through the configured concurrency stages, then stops the test."""

    def reset_time(self) -> None:
        super().reset_time()
        _Run.anchor_s = self.start_time
        _Run.anchor_wall_s = time.time()
        _Run.stages_written = 0

    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        _write_stages(run_time, completed=True)
        return _Run.steps.tick(run_time)


class LLMUser(FastHttpUser):
    """One closed-loop virtual user: sends the next request as soon as the last one ended."""

    def on_start(self) -> None:
        settings = _Run.settings
        self.user_id = next(_Run.user_ids)
        self.seq = 0
        self.factory = RequestFactory(settings.workload, stream_id=self.user_id)
        transport = LocustTransport(self.client, self.host or "")
        self.llm = OpenAIClient(transport, settings.endpoint, settings.workload)
        self.connection_timeout = settings.timeouts.connect
        self.network_timeout = settings.timeouts.total

    @task
    def generate(self) -> None:
        scheduled_ns = time.perf_counter_ns()
        stage = _Run.steps.stage_at(scheduled_ns / 1e9 - _Run.anchor_s)
        if stage is None:
            raise StopUser()
        self.seq += 1
        ctx = RequestContext(
            target=_Run.settings.endpoint.name,
            stage=stage.index,
            mode="concurrency",
            load=stage.load,
            scheduled_ns=scheduled_ns,
            warmup=scheduled_ns / 1e9 - _Run.anchor_s < stage.measure_start_s,
            user=self.user_id,
            seq=self.seq,
        )
        assert _Run.requests is not None
        try:
            record = self.llm.execute(self.factory.next(), ctx)
        except GreenletExit:
            _Run.requests.write(_cancelled(ctx))
            raise
        _Run.requests.write(record)
        _fire(self.environment, self.llm.path, record)


def _cancelled(ctx: RequestContext) -> RequestRecord:
    return RequestRecord(
        target=ctx.target,
        stage=ctx.stage,
        mode="concurrency",
        load=ctx.load,
        warmup=ctx.warmup,
        user=ctx.user,
        seq=ctx.seq,
        outcome=Outcome.CANCELLED,
        error="run stopped before the request ended",
        scheduled_ns=ctx.scheduled_ns,
    )


class RequestFailed(Exception):
    """Shown in Locust's failure table: the outcome and the server's message."""


def _fire(environment: Environment, path: str, record: RequestRecord) -> None:
    fire = environment.events.request.fire
    ok = record.outcome is Outcome.OK
    end_ns = record.end_ns or time.perf_counter_ns()
    elapsed_ms = (
        record.e2e_ms if record.e2e_ms is not None else (end_ns - record.scheduled_ns) / 1e6
    )
    fire(
        request_type="POST",
        name=path,
        response_time=elapsed_ms,
        response_length=record.output_tokens,
        exception=None if ok else RequestFailed(f"{record.outcome}: {record.error}"),
        context={},
    )
    if not ok:
        return
    for name, value in (("TTFT", record.ttft_ms), ("TPOT", record.tpot_ms)):
        if value is not None:
            fire(
                request_type="LLM",
                name=name,
                response_time=value,
                response_length=0,
                exception=None,
                context={},
            )


__all__ = ["LLMUser", "StagesShape", "WorkloadConfig", "settings_from_options"]
