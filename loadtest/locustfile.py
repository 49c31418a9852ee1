"""The Locust adapter: virtual users call a protocol client and write one record per request.

Works with plain Locust:

    locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8000 \\
        --qb-stages 1,4,16 --qb-stage-duration 20s --qb-run-dir runs/manual

`quantbench run` passes `--qb-settings FILE` (a `LocustSettings` JSON) instead. Records go
to `<run dir>/requests.jsonl` (one write per request) and stage windows to `stages.jsonl`.
Closed loop (`concurrency`) runs one `LLMUser` per user; open loop (`rate`) and `batch`
stages run one `DispatchUser` per generator process, which sends on the seeded schedule.
With `--processes N` (or master/workers) the master announces the run's time anchor and
each worker's dispatcher takes every N-th arrival of the one global schedule.
"""

from __future__ import annotations

import gc
import itertools
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import httpx
from gevent import GreenletExit
from gevent.pool import Pool
from locust import LoadTestShape, User, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # plain `locust -f` from a clone

from loadtest.arrivals import arrival_times
from loadtest.clients import CLIENTS
from loadtest.clients.base import RequestContext, StreamingClient
from loadtest.config import LocustSettings, parse_duration
from loadtest.generator_stats import ClientExporter, CpuSampler
from loadtest.locust_transport import LocustTransport
from loadtest.prompts import DatasetItem, PromptSource, load_dataset
from loadtest.records import (
    REQUESTS_FILE,
    SCHEDULED_FILE,
    STAGES_FILE,
    Outcome,
    RecordWriter,
    RequestRecord,
    ScheduledRecord,
    StageRecord,
)
from loadtest.shapes import LoadPlan, StagePlan
from loadtest.workload import GenRequest, RequestFactory, prompt_source

log = logging.getLogger("quantbench")
_ANCHOR_MESSAGE = "quantbench_anchor"
_STOP_MARGIN_S = 5.0  # the dispatcher drains itself; Locust waits this much longer
_ANCHOR_WAIT_S = 10.0


class _Run:
    """State shared by the users, the shape and the listeners of one Locust process."""

    settings: LocustSettings = LocustSettings()
    plan: LoadPlan = LoadPlan(settings.load)
    requests: RecordWriter | None = None
    journal: RecordWriter | None = None
    stages: RecordWriter | None = None
    exporter: ClientExporter = ClientExporter()
    anchor_s: float = 0.0  # perf_counter() at the start of stage 0
    anchor_wall_s: float = 0.0
    dispatchers: int = 1
    stages_written: int = 0
    workers_lost: int = 0
    anchor_ready = gevent.event.Event()
    prompts: PromptSource | None = None
    dataset: list[DatasetItem] | None = None
    last_tick: tuple[int, float, list[type[User]]] | None = None
    user_ids = itertools.count()


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("quantbench")
    group.add_argument("--qb-settings", help="LocustSettings JSON written by `quantbench run`")
    group.add_argument("--qb-run-dir", help="run directory for requests.jsonl and stages.jsonl")
    group.add_argument("--qb-mode", choices=["concurrency", "rate", "batch"])
    group.add_argument("--qb-stages", help="comma-separated loads: users, requests/s or batch")
    group.add_argument("--qb-stage-duration", help="measured time per stage, e.g. 30s")
    group.add_argument("--qb-warmup", help="warm-up before each stage, excluded, e.g. 5s")
    group.add_argument("--qb-arrival", choices=["constant", "poisson", "gamma"])
    group.add_argument("--qb-endpoint", choices=["chat", "completions"])
    group.add_argument("--qb-api", choices=sorted(CLIENTS))
    group.add_argument("--qb-model", help="model name to request (default: first of /v1/models)")
    group.add_argument("--qb-stack", choices=["vllm", "tgi", "exllamav2", "other"])
    group.add_argument("--qb-target", help="target name written into each record")
    group.add_argument("--qb-prompt-tokens", type=int)
    group.add_argument("--qb-output-tokens", type=int)
    group.add_argument(
        "--qb-exporter-port",
        type=int,
        default=0,
        help="serve client-side Prometheus metrics on this port (+ the worker index)",
    )


def settings_from_options(options: Any) -> LocustSettings:
    """Build settings from `--qb-settings`, then apply any individual `--qb-*` flag on top."""
    if options.qb_settings:
        base = LocustSettings.model_validate_json(Path(options.qb_settings).read_text())
    else:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        base = LocustSettings(run_dir=Path("runs") / f"{stamp}-locust")
    data = base.model_dump()
    load, workload, endpoint = data["load"], data["workload"], data["endpoint"]
    if options.qb_run_dir:
        data["run_dir"] = options.qb_run_dir
    if options.qb_stages:
        load["stages"] = [float(value) for value in options.qb_stages.split(",")]
    for flag, key in (("qb_stage_duration", "stage_duration"), ("qb_warmup", "warmup")):
        if getattr(options, flag):
            load[key] = parse_duration(getattr(options, flag))
    for flag, section, key in (
        ("qb_mode", load, "mode"),
        ("qb_arrival", load, "arrival"),
        ("qb_endpoint", workload, "endpoint"),
        ("qb_prompt_tokens", workload, "prompt_tokens"),
        ("qb_output_tokens", workload, "output_tokens"),
        ("qb_api", endpoint, "api"),
        ("qb_model", endpoint, "model"),
        ("qb_stack", endpoint, "stack"),
        ("qb_target", endpoint, "name"),
    ):
        if getattr(options, flag):
            section[key] = getattr(options, flag)
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
    if settings.endpoint.model is None and settings.endpoint.api == "openai" and environment.host:
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
        environment.stop_timeout = settings.load.drain_timeout + _STOP_MARGIN_S
    for user_class in (LLMUser, DispatchUser):
        user_class.connection_timeout = settings.timeouts.connect
        user_class.network_timeout = settings.timeouts.total
    DispatchUser.concurrency = settings.load.max_in_flight
    _Run.settings = settings
    _Run.plan = LoadPlan(settings.load, settings.first_stage)
    _Run.prompts = prompt_source(settings.workload, settings.tokens_per_word)
    workload = settings.workload
    _Run.dataset = load_dataset(workload.dataset) if workload.dataset else None
    # Everything allocated so far (Locust, gevent, imports) lives for the whole run: freezing
    # it keeps the garbage collector's full passes, and their pauses, short.
    gc.collect()
    gc.freeze()
    if not isinstance(environment.runner, MasterRunner):
        _Run.requests = RecordWriter(settings.run_dir / REQUESTS_FILE)
        _Run.journal = RecordWriter(settings.run_dir / SCHEDULED_FILE)
        _start_process_side(environment, settings, options.qb_exporter_port)
    if not isinstance(environment.runner, WorkerRunner):
        _Run.stages = RecordWriter(settings.run_dir / STAGES_FILE)
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message(_ANCHOR_MESSAGE, _on_anchor)


def _start_process_side(environment: Environment, settings: LocustSettings, port: int) -> None:
    sampler = CpuSampler(settings.run_dir)

    def sample_forever() -> None:
        while True:
            gevent.sleep(1.0)
            sampler.sample()

    gevent.spawn(sample_forever)
    if port:
        index = max(getattr(environment.runner, "worker_index", 0), 0)
        _Run.exporter.serve(port + index)


def _on_anchor(environment: Environment, msg: Any, **_: Any) -> None:
    """Workers: the master's stage-0 start (wall clock) and how many dispatchers share it."""
    if _Run.anchor_ready.is_set():
        return
    _Run.anchor_wall_s = msg.data["wall_s"]
    _Run.anchor_s = time.perf_counter() - (time.time() - _Run.anchor_wall_s)
    _Run.dispatchers = max(int(msg.data["dispatchers"]), 1)
    _Run.anchor_ready.set()


def _await_anchor() -> None:
    """Users start sending only once this process knows when stage 0 began."""
    if not _Run.anchor_ready.wait(timeout=_ANCHOR_WAIT_S):
        log.error("no time anchor from the master within %.0f s", _ANCHOR_WAIT_S)
        raise StopUser()


def _write_stages(until_s: float, completed: bool) -> None:
    """Append the window of every stage that ended before `until_s` and is not yet written."""
    if _Run.stages is None:
        return
    for stage in _Run.plan.stages[_Run.stages_written :]:
        if stage.end_s > until_s and completed:
            return
        end_s = min(stage.end_s, until_s)
        if end_s <= stage.start_s:
            return
        _Run.stages.write(_stage_record(stage, end_s, completed=stage.end_s <= until_s))
        _Run.stages_written += 1


def _stage_record(stage: StagePlan, end_s: float, completed: bool) -> StageRecord:
    return StageRecord(
        target=_Run.settings.endpoint.name,
        stage=stage.index,
        mode=_Run.plan.mode,
        load=stage.load,
        warmup_s=stage.measure_start_s - stage.start_s,
        start_wall_s=_Run.anchor_wall_s + stage.start_s,
        end_wall_s=_Run.anchor_wall_s + end_s,
        start_ns=int((_Run.anchor_s + stage.start_s) * 1e9),
        end_ns=int((_Run.anchor_s + end_s) * 1e9),
        completed=completed,
        workers_lost=_Run.workers_lost,
    )


@events.test_stop.add_listener
def _on_stop(environment: Environment, **_: Any) -> None:
    _write_stages(time.perf_counter() - _Run.anchor_s, completed=False)


class StagesShape(LoadTestShape):
    """Steps through the configured stages, lets in-flight requests drain, then stops."""

    def reset_time(self) -> None:
        super().reset_time()
        _Run.anchor_s = self.start_time
        _Run.anchor_wall_s = time.time()
        _Run.stages_written = 0
        _Run.last_tick = None
        if isinstance(self.runner, MasterRunner):
            _Run.dispatchers = max(self.runner.worker_count, 1)
        else:
            _Run.anchor_ready.set()
        self._announce()

    def _announce(self) -> None:
        """Master: tell the workers the time anchor (again each tick: a worker may register
        its listener after the first message; users wait for it before sending)."""
        if isinstance(self.runner, MasterRunner):
            data = {"wall_s": _Run.anchor_wall_s, "dispatchers": _Run.dispatchers}
            self.runner.send_message(_ANCHOR_MESSAGE, data)

    def tick(self) -> tuple[int, float, list[type[User]]] | None:
        run_time = self.get_run_time()
        runner = self.runner
        if isinstance(runner, MasterRunner) and len(runner.clients.missing) > _Run.workers_lost:
            _Run.workers_lost = len(runner.clients.missing)
            log.error("a load-generator worker stopped answering; the stage will be marked")
        self._announce()
        _write_stages(run_time, completed=True)
        shape = _Run.plan.tick(run_time)
        if shape is None:
            # The drain: users stop by themselves once the last stage is over; stopping the
            # test now would kill the requests still in flight (workers quit at once).
            draining = run_time < _Run.plan.total_s + _Run.settings.load.drain_timeout
            users_left = runner is not None and runner.user_count > 0
            return _Run.last_tick if draining and users_left else None
        users, rate = shape
        if _Run.plan.mode == "concurrency":
            _Run.last_tick = (users, rate, [LLMUser])
        else:
            _Run.last_tick = (_Run.dispatchers, float(_Run.dispatchers), [DispatchUser])
        return _Run.last_tick


def _factory(stream_id: int | str) -> RequestFactory:
    return RequestFactory(_Run.settings.workload, stream_id, _Run.prompts, _Run.dataset)


def _client(user: FastHttpUser) -> StreamingClient:
    settings = _Run.settings
    transport = LocustTransport(user.client, user.host or "")
    return CLIENTS[settings.endpoint.api](
        transport, settings.endpoint, settings.workload, settings.timeouts
    )


def _context(stage: StagePlan, scheduled_ns: int, user: int, seq: int) -> RequestContext:
    return RequestContext(
        target=_Run.settings.endpoint.name,
        stage=stage.index,
        mode=_Run.plan.mode,
        load=stage.load,
        scheduled_ns=scheduled_ns,
        warmup=scheduled_ns / 1e9 - _Run.anchor_s < stage.measure_start_s,
        user=user,
        seq=seq,
        request_id=uuid.uuid4().hex,
    )


def _unsent(ctx: RequestContext, outcome: Outcome, error: str) -> RequestRecord:
    return ctx.record(outcome, error=error)


def _send(
    environment: Environment, client: StreamingClient, request: GenRequest, ctx: RequestContext
) -> None:
    """Run one request and write its record, whatever happens (a kill writes `cancelled`)."""
    assert _Run.requests is not None and _Run.journal is not None
    _Run.journal.write(
        ScheduledRecord(target=ctx.target, stage=ctx.stage, request_id=ctx.request_id)
    )
    try:
        record = client.execute(request, ctx)
    except GreenletExit:
        _Run.requests.write(_unsent(ctx, Outcome.CANCELLED, "run stopped before it ended"))
        raise
    _Run.requests.write(record)
    _Run.exporter.observe(record)
    _fire(environment, client.path, record)
    # Yield before the next request: when many streams end together (closed loop, equal
    # lengths), their bookkeeping must not hold back the tokens other streams are receiving.
    gevent.sleep(0)


class LLMUser(FastHttpUser):
    """One closed-loop virtual user: sends the next request as soon as the last one ended."""

    def on_start(self) -> None:
        _await_anchor()
        self.user_id = next(_Run.user_ids)
        self.seq = 0
        self.factory = _factory(self.user_id)
        self.llm = _client(self)

    @task
    def generate(self) -> None:
        scheduled_ns = time.perf_counter_ns()
        stage = _Run.plan.stage_at(scheduled_ns / 1e9 - _Run.anchor_s)
        if stage is None:
            raise StopUser()
        self.seq += 1
        ctx = _context(stage, scheduled_ns, self.user_id, self.seq)
        _send(self.environment, self.llm, self.factory.next(), ctx)


class DispatchUser(FastHttpUser):
    """Open loop and batch: sends on the schedule from greenlets, never waiting for replies."""

    def on_start(self) -> None:
        _await_anchor()
        runner = self.environment.runner
        self.slot = max(getattr(runner, "worker_index", 0), 0) % _Run.dispatchers
        self.llm = _client(self)
        self.pool = Pool(_Run.settings.load.max_in_flight)

    def _launch(self, stage: StagePlan, index: int, scheduled_s: float) -> None:
        scheduled_ns = int((_Run.anchor_s + scheduled_s) * 1e9)
        ctx = _context(stage, scheduled_ns, self.slot, index)
        seed = f"{stage.index}:{index}"
        request = _factory(seed).next()
        if self.pool.full():
            cap = _Run.settings.load.max_in_flight
            assert _Run.requests is not None
            _Run.requests.write(_unsent(ctx, Outcome.NOT_SENT, f"{cap} requests in flight"))
            return
        self.pool.spawn(_send, self.environment, self.llm, request, ctx)

    def _sleep_until(self, run_time_s: float) -> None:
        gevent.sleep(max(0.0, _Run.anchor_s + run_time_s - time.perf_counter()))

    @task
    def dispatch(self) -> None:
        load = _Run.settings.load
        for stage in _Run.plan.stages:
            if _Run.plan.mode == "rate":
                seed = f"{_Run.settings.workload.seed}:{stage.index}"
                times = arrival_times(
                    stage.load, stage.start_s, stage.end_s, load.arrival, seed, load.burstiness
                )
                for index, at_s in enumerate(times):
                    if index % _Run.dispatchers == self.slot:
                        self._sleep_until(at_s)
                        self._launch(stage, index, at_s)
            else:
                self._sleep_until(stage.start_s)
                round_index = 0
                while (at_s := time.perf_counter() - _Run.anchor_s) < stage.end_s:
                    for i in range(stage.users):
                        self._launch(stage, round_index * stage.users + i, at_s)
                    self.pool.join()
                    round_index += 1
        self.pool.join(timeout=load.drain_timeout)
        self.pool.kill()  # what is still running is written `cancelled`
        raise StopUser()


class RequestFailed(Exception):
    """Shown in Locust's failure table: the outcome and the server's message."""


def _fire(environment: Environment, path: str, record: RequestRecord) -> None:
    """Locust's view: one request event per request (every outcome, failures counted once),
    then `LLM` rows for TTFT, TPOT and E2E of the ok ones, logged into their own entries only
    so Locust's Aggregated row, and its failure ratio, count each request once."""
    ok = record.outcome is Outcome.OK
    end_ns = record.end_ns or time.perf_counter_ns()
    elapsed_ms = (
        record.e2e_ms if record.e2e_ms is not None else (end_ns - record.scheduled_ns) / 1e6
    )
    environment.events.request.fire(
        request_type="POST",
        name=path,
        response_time=elapsed_ms,
        response_length=record.output_tokens,
        exception=None if ok else RequestFailed(f"{record.outcome}: {record.error}"),
        context={},
    )
    if not ok:
        return
    for name, value in (("TTFT", record.ttft_ms), ("TPOT", record.tpot_ms), ("E2E", record.e2e_ms)):
        if value is not None:
            # float ms, as the request event passes them (the stub says int)
            environment.stats.get(name, "LLM").log(value, 0)  # type: ignore[arg-type]


__all__ = ["DispatchUser", "LLMUser", "StagesShape", "settings_from_options"]
