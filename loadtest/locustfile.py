"""The Locust adapter: virtual users call a protocol client and write one record per request.

Works with plain Locust:

    locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8000 \\
        --qb-stages 1,4,16 --qb-stage-duration 20s --qb-run-dir runs/manual

and leaves a run directory that `quantbench report` and `plan` read (it writes run.json when
the directory has none). `quantbench run` passes `--qb-settings FILE` (a `LocustSettings`
JSON) instead. Records go to `<run dir>/requests.jsonl` (one write per request) and stage
windows to `stages.jsonl`. Closed loop (`concurrency`) runs one `LLMUser` per user; open
loop (`rate`) and `batch` stages run one `DispatchUser` per generator process, which
executes the pure plan of `loadtest.dispatch`. With `--processes N` (or master/workers) the
master announces the run's time anchor and each worker's dispatcher takes every N-th
arrival of the one global schedule. A stage runs until it has its ok samples
(`loadtest.shapes`): the process that owns the shape (local or master) counts them — a
master from its workers' reports — decides each stage's end and, on a master, tells the
workers a moment ahead. The run's state is a `RunState` on the environment.

`locust --help` cannot list the `--qb-*` flags (Locust prints its help before it reads a
locustfile: locustio/locust#2917); `python loadtest/locustfile.py --help` lists them.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

# Run as a script (`python loadtest/locustfile.py`), Python puts loadtest/ first on the path,
# where loadtest/secrets.py would shadow the standard library's `secrets` (numpy imports it):
# a stable sort moves that entry last, the others keep their order.
sys.path.sort(key=lambda entry: Path(entry or ".").resolve() == Path(__file__).resolve().parent)

import gevent
import gevent.event
from gevent import GreenletExit
from gevent.pool import Pool
from locust import LoadTestShape, User, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # plain `locust -f` from a clone

from loadtest.clients import CLIENTS
from loadtest.clients.base import RequestContext, StreamingClient
from loadtest.config import LocustSettings, parse_duration
from loadtest.discovery import DiscoveryError, served_model
from loadtest.dispatch import AwaitRound, Launch, Wait, connect_backoff_s
from loadtest.generator_stats import CpuSampler, LoopLagProbe
from loadtest.lifeline import die_with_parent
from loadtest.locust_run import RunState
from loadtest.locust_transport import LocustTransport
from loadtest.records import Outcome, RequestRecord, ScheduledRecord
from loadtest.replay import ReplayLaunch
from loadtest.run_meta import RUN_FILE, RunMeta, RunMetaError, TargetMeta
from loadtest.workload import GenRequest

log = logging.getLogger("quantbench")
_ANCHOR_MESSAGE = "quantbench_anchor"
_COUNTS_MESSAGE = "quantbench_counts"  # worker → master: ok and failed requests per stage
_ENDINGS_MESSAGE = "quantbench_endings"  # master → workers: the stage endings decided
# A master decides an ending this far ahead, so that its workers hear of it before it passes
# (loopback messages take about a millisecond); workers report their counts every
# _REPORT_S, so a stage that has its samples in time still ends on time.
_LEAD_S = 0.2
_REPORT_S = 0.1
_STOP_MARGIN_S = 5.0  # the dispatcher drains itself; Locust waits this much longer
_ANCHOR_WAIT_S = 10.0
_SUPERVISE_S = 0.25
_LOADED_BY = os.getpid()  # Locust imports this file before it forks --processes workers


def add_arguments(parser: Any) -> None:
    """The `--qb-*` flags, and loopback as the default bind address of a master."""
    group = parser.add_argument_group("quantbench")
    group.add_argument("--qb-settings", help="LocustSettings JSON written by `quantbench run`")
    group.add_argument("--qb-run-dir", help="run directory for requests.jsonl and stages.jsonl")
    group.add_argument("--qb-mode", choices=["concurrency", "rate", "batch", "replay"])
    group.add_argument("--qb-stages", help="comma-separated loads: users, requests/s or batch")
    group.add_argument("--qb-stage-duration", help="measured time per stage, e.g. 30s")
    group.add_argument(
        "--qb-max-stage-duration",
        help="measure a stage at most this long while it lacks samples, e.g. 10m",
    )
    group.add_argument(
        "--qb-min-samples",
        type=int,
        help="ok requests a stage needs before it ends (default 59, what a p95 needs)",
    )
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
        "--qb-api-key-env",
        help="environment variable holding the target's API key (sent as a Bearer token)",
    )
    group.add_argument(
        "--qb-allow-overload",
        action="store_true",
        default=None,
        help="run stages beyond what one generator process times accurately",
    )
    group.add_argument(
        "--qb-exporter-port",
        type=int,
        default=0,
        help="serve client-side Prometheus metrics on this port (+ the worker index)",
    )
    # Locust's master listens on every interface by default; a multi-host run asks for it
    # with --master-bind-host.
    parser.set_defaults(master_bind_host="127.0.0.1")


events.init_command_line_parser.add_listener(add_arguments)


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
        load["stages"] = [value.strip() for value in options.qb_stages.split(",")]
    for flag, key in (
        ("qb_stage_duration", "stage_duration"),
        ("qb_max_stage_duration", "max_stage_duration"),
        ("qb_warmup", "warmup"),
    ):
        if getattr(options, flag):
            load[key] = parse_duration(getattr(options, flag))
    if options.qb_min_samples:
        data["goal"]["min_ok"] = options.qb_min_samples
    for flag, section, key in (
        ("qb_mode", load, "mode"),
        ("qb_arrival", load, "arrival"),
        ("qb_allow_overload", load, "allow_overload"),
        ("qb_endpoint", workload, "endpoint"),
        ("qb_prompt_tokens", workload, "prompt_tokens"),
        ("qb_output_tokens", workload, "output_tokens"),
        ("qb_api", endpoint, "api"),
        ("qb_model", endpoint, "model"),
        ("qb_stack", endpoint, "stack"),
        ("qb_target", endpoint, "name"),
        ("qb_api_key_env", endpoint, "api_key_env"),
    ):
        if getattr(options, flag):
            section[key] = getattr(options, flag)
    return LocustSettings.model_validate(data)


def _fail(message: str) -> NoReturn:
    """A mistake in the flags or the target: one line, exit code 2, no traceback."""
    log.error("%s", message)
    raise SystemExit(2)


def _settings(environment: Environment, options: Any) -> LocustSettings:
    try:
        settings = settings_from_options(options)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        _fail(f"--qb-*: {where + ': ' if where else ''}{first['msg']}")
    except (OSError, ValueError) as exc:
        _fail(f"--qb-*: {exc}")
    endpoint = settings.endpoint
    if endpoint.model is None and endpoint.api == "openai" and environment.host:
        try:
            model = served_model(environment.host, endpoint.api_key_env)
        except DiscoveryError as exc:
            _fail(f"no --qb-model given and {exc}")
        settings = settings.model_copy(
            update={"endpoint": endpoint.model_copy(update={"model": model})}
        )
    return settings


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for package in ("quantbench", "locust"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _record_end(run_dir: Path) -> None:
    """By hand: the end of the run in run.json (not one `quantbench run` keeps)."""
    try:
        meta = RunMeta.read(run_dir)
    except RunMetaError:
        return
    if meta.source == "locust":
        meta.ended_at = _now_iso()
        meta.write(run_dir)


def _record_run(settings: LocustSettings, host: str | None) -> None:
    """By hand: leave a run.json that `quantbench report` and `plan` read. One written by
    `quantbench run` is left alone; another by-hand target is added to a by-hand one."""
    run_dir, endpoint = settings.run_dir, settings.endpoint
    target = TargetMeta(
        name=endpoint.name, stack=endpoint.stack, api=endpoint.api, url=host, model=endpoint.model
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / RUN_FILE).exists():
        try:
            meta = RunMeta.read(run_dir)
        except RunMetaError as exc:
            _fail(str(exc))
        if meta.source != "locust" or meta.target(endpoint.name) is not None:
            return
        meta.targets.append(target)
        meta.selected_targets.append(endpoint.name)
    else:
        meta = RunMeta(
            run_id=run_dir.name,
            name=run_dir.name,
            source="locust",
            versions=_versions(),
            started_at=_now_iso(),
            seeds={"workload": settings.workload.seed},
            config=settings.model_dump(mode="json", include={"workload", "load", "timeouts"}),
            selected_targets=[endpoint.name],
            targets=[target],
        )
    meta.write(run_dir)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        # First, before anything yields: the master may already be announcing the anchor.
        runner.register_message(_ANCHOR_MESSAGE, _on_anchor)
        runner.register_message(_ENDINGS_MESSAGE, _on_endings)
        if getattr(options, "processes", None):  # forked by this Locust: die with it
            die_with_parent(_LOADED_BY)
    settings = _settings(environment, options)
    if not options.stop_timeout:
        # Let requests scheduled inside the last stage finish (the drain) instead of being
        # killed and counted `cancelled`; an explicit --stop-timeout wins.
        environment.stop_timeout = settings.load.drain_timeout + _STOP_MARGIN_S
    for user_class in (LLMUser, DispatchUser):
        user_class.connection_timeout = settings.timeouts.connect
        user_class.network_timeout = settings.timeouts.total
    DispatchUser.concurrency = settings.load.max_in_flight
    if isinstance(runner, MasterRunner):
        runner.register_message(_COUNTS_MESSAGE, _on_counts)
    state = RunState(settings, lead_s=_LEAD_S if isinstance(runner, MasterRunner) else 0.0)
    state.attach(environment)
    # Everything allocated so far (Locust, gevent, imports) lives for the whole run: freezing
    # it keeps the garbage collector's full passes, and their pauses, short.
    gc.collect()
    gc.freeze()
    if not isinstance(runner, MasterRunner):
        state.open_records()
        _start_process_side(environment, state, options.qb_exporter_port)
    if not isinstance(runner, WorkerRunner):
        if not options.qb_settings:
            _record_run(settings, environment.host)
        state.open_stages()
        gevent.signal_handler(signal.SIGTERM, _quit_now, environment)


def _quit_now(environment: Environment) -> None:
    """SIGTERM to a headless run with a shape: Locust installs its own SIGTERM handler only
    after the shape has finished (locust/main.py: `start_automatic_run` joins the shape
    first), so until then the signal would kill the process outright, losing the stage
    window and the records in flight. Stop as Ctrl-C does, writing what is in flight
    `cancelled` at once."""
    log.warning("SIGTERM: stopping; requests in flight are recorded as cancelled")
    environment.stop_timeout = 0
    state = RunState.find(environment)
    if state is not None:
        state.stopping = True
    if environment.runner is not None:
        environment.runner.quit()


def _start_process_side(environment: Environment, state: RunState, port: int) -> None:
    lag = LoopLagProbe()
    sampler = CpuSampler(state.settings.run_dir, lag)

    def sample_forever() -> None:
        while True:
            gevent.sleep(1.0)
            sampler.sample()

    gevent.spawn(lag.run, gevent.sleep)
    gevent.spawn(sample_forever)
    runner = environment.runner
    if isinstance(runner, WorkerRunner):

        def report_counts() -> None:
            while True:
                gevent.sleep(_REPORT_S)
                runner.send_message(_COUNTS_MESSAGE, state.counts_message())

        gevent.spawn(report_counts)
    if port:
        index = max(getattr(environment.runner, "worker_index", 0), 0)
        state.exporter.serve(port + index)


def _on_anchor(environment: Environment, msg: Any, **_: Any) -> None:
    """Workers: the master's stage-0 start (wall clock) and how many dispatchers share it.
    (Before this process has its state, the message is dropped: the master repeats it.)"""
    state = RunState.find(environment)
    if state is None or state.anchor.ready.is_set():
        return
    wall_s = msg.data["wall_s"]
    state.anchor.set(time.perf_counter() - (time.time() - wall_s), wall_s, msg.data["dispatchers"])


def _on_endings(environment: Environment, msg: Any, **_: Any) -> None:
    """Workers: the stage endings the master decided."""
    state = RunState.find(environment)
    if state is not None:
        state.take_endings(msg.data)


def _on_counts(environment: Environment, msg: Any, **_: Any) -> None:
    """Master: a worker's ok and failed counts per stage (cumulative, so a lost message
    costs nothing); the running stage may now have its samples."""
    state = RunState.find(environment)
    if state is not None and state.anchor.ready.is_set():
        state.take_peer_counts(str(msg.node_id), msg.data)
        _decide(environment, state)


def _decide(environment: Environment, state: RunState) -> None:
    """Local or master: end the running stage if its counts say so; a master tells its
    workers at once (the ending lies `_LEAD_S` ahead)."""
    runner = environment.runner
    if state.decide() is not None and isinstance(runner, MasterRunner):
        runner.send_message(_ENDINGS_MESSAGE, state.endings_message())


def _ready_state(environment: Environment) -> RunState:
    """Users start sending only once this process has its settings (a worker may still be
    reading the model name when the master spawns) and knows when stage 0 began."""
    deadline = time.monotonic() + _ANCHOR_WAIT_S
    while (state := RunState.find(environment)) is None:
        if time.monotonic() > deadline:
            log.error("this process found no settings within %.0f s", _ANCHOR_WAIT_S)
            raise StopUser()
        gevent.sleep(0.05)
    if not state.anchor.ready.wait(timeout=max(deadline - time.monotonic(), 0.0)):
        log.error("no time anchor from the master within %.0f s", _ANCHOR_WAIT_S)
        raise StopUser()
    return state


@events.test_start.add_listener
def _on_start(environment: Environment, **_: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(_supervise, environment)


def _supervise(environment: Environment) -> None:
    """Local or master, while the shape runs: decide stage endings, write each stage's
    window as it ends; a master also notices lost workers and repeats the anchor and the
    endings (a worker may connect late; a repeated ending changes nothing)."""
    state = RunState.of(environment)
    state.anchor.ready.wait()
    runner = environment.runner
    while not state.stopping:
        if isinstance(runner, MasterRunner):
            missing = len(runner.clients.missing)
            if missing > state.workers_lost:
                state.workers_lost = missing
                log.error("a load-generator worker stopped answering; the stage will be marked")
        _decide(environment, state)
        if isinstance(runner, MasterRunner):
            data = {"wall_s": state.anchor.wall_s, "dispatchers": state.anchor.dispatchers}
            runner.send_message(_ANCHOR_MESSAGE, data)
            runner.send_message(_ENDINGS_MESSAGE, state.endings_message())
        state.write_stages(state.anchor.run_time_s(), completed=True)
        gevent.sleep(_SUPERVISE_S)


@events.test_stopping.add_listener
def _on_stopping(environment: Environment, **_: Any) -> None:
    """Any process: the test is ending (its end, or a quit): launch nothing new."""
    state = RunState.find(environment)
    if state is not None:
        state.stopping = True


@events.test_stop.add_listener
def _on_stop(environment: Environment, **_: Any) -> None:
    _close_stages(environment)


def _close_stages(environment: Environment) -> None:
    """Local or master, once the test stops (or Locust quits before that: a master whose
    workers quit first never fires test_stop): the stage cut short, and by hand the end."""
    state = RunState.find(environment)
    if state is None or isinstance(environment.runner, WorkerRunner):
        return
    if state.anchor.ready.is_set():
        state.write_stages(state.anchor.run_time_s(), completed=False)
    options = environment.parsed_options
    if options is not None and not options.qb_settings:
        _record_end(state.settings.run_dir)


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    """SIGTERM or Ctrl-C (or the normal end): what is still in flight is written `cancelled`
    at once instead of being waited for (the drain is for the normal end only)."""
    environment.stop_timeout = 0
    state = RunState.find(environment)
    if state is not None:
        state.stopping = True
    _close_stages(environment)


class StagesShape(LoadTestShape):
    """Steps through the configured stages, lets in-flight requests drain, then stops."""

    _last: tuple[int, float, list[type[User]]] | None = None

    def reset_time(self) -> None:
        super().reset_time()
        state = RunState.of(self.runner.environment) if self.runner else None
        if state is None:
            return
        runner = self.runner
        dispatchers = runner.worker_count if isinstance(runner, MasterRunner) else 1
        state.anchor.set(self.start_time, time.time(), dispatchers)
        state.restart_stages()
        self._last = None

    def tick(self) -> tuple[int, float, list[type[User]]] | None:
        state = RunState.of(self.runner.environment) if self.runner else None
        if state is None:
            return None
        run_time = self.get_run_time()
        shape = state.plan.tick(run_time)
        if shape is None:
            # The drain: users stop by themselves once the last stage is over; stopping the
            # test now would kill the requests still in flight (workers quit at once).
            finished_s = state.plan.finished_at(run_time) or run_time
            draining = run_time < finished_s + state.settings.load.drain_timeout
            users_left = self.runner is not None and self.runner.user_count > 0
            return self._last if draining and users_left else None
        users, rate = shape
        if state.plan.mode == "concurrency":
            self._last = (users, rate, [LLMUser])
        else:
            dispatchers = state.anchor.dispatchers
            self._last = (dispatchers, float(dispatchers), [DispatchUser])
        return self._last


def _client(state: RunState, user: FastHttpUser) -> StreamingClient:
    settings = state.settings
    transport = LocustTransport(user.client, user.host or "")
    return CLIENTS[settings.endpoint.api](
        transport, settings.endpoint, settings.workload, settings.timeouts
    )


def _send(
    environment: Environment,
    state: RunState,
    client: StreamingClient,
    request: GenRequest,
    ctx: RequestContext,
) -> RequestRecord:
    """Run one request and write its record, whatever happens (a kill writes `cancelled`).
    The server's error text is stored and shown only with the target's key redacted."""
    assert state.requests is not None and state.journal is not None
    state.journal.write(
        ScheduledRecord(target=ctx.target, stage=ctx.stage, request_id=ctx.request_id)
    )
    try:
        record = client.execute(request, ctx)
    except GreenletExit:
        state.requests.write(ctx.record(Outcome.CANCELLED, error="run stopped before it ended"))
        raise
    record.error = state.redact.optional(record.error)
    state.requests.write(record)
    state.count(record)
    if not isinstance(environment.runner, WorkerRunner):
        _decide(environment, state)
    state.exporter.observe(record)
    _fire(environment, client.path, record)
    # Yield before the next request: when many streams end together (closed loop, equal
    # lengths), their bookkeeping must not hold back the tokens other streams are receiving.
    gevent.sleep(0)
    return record


class LLMUser(FastHttpUser):
    """One closed-loop virtual user: sends the next request as soon as the last one ended
    (after a failed connection, with a short back-off: `loadtest.dispatch`); with
    `workload.sessions`, the next turn of its conversation after the answer and a think time."""

    def on_start(self) -> None:
        self.state = _ready_state(self.environment)
        self.user_id = self.state.next_user_id()
        self.seq = 0
        self.backoff_s = 0.0
        self.factory = self.state.factory(self.user_id)
        self.conversations = self.state.conversations(self.user_id)
        self.llm = _client(self.state, self)

    @task
    def generate(self) -> None:
        state = self.state
        where: dict[str, int | None] = {}
        if self.conversations is not None:
            turn = self.conversations.next_turn()
            if turn.think_s > 0:
                gevent.sleep(turn.think_s)
            request, where = turn.request, {"session": turn.session, "turn": turn.turn}
        else:
            request = self.factory.next()
        scheduled_ns = time.perf_counter_ns()
        stage = state.plan.stage_at(state.anchor.run_time_s(scheduled_ns / 1e9))
        if stage is None or state.stopping:
            raise StopUser()
        self.seq += 1
        ctx = state.context(stage, scheduled_ns, self.user_id, self.seq, **where)
        record = _send(self.environment, state, self.llm, request, ctx)
        if self.conversations is not None:
            ok = record.outcome is Outcome.OK
            self.conversations.answered(record.output_tokens if ok else None)
        self.backoff_s = connect_backoff_s(self.backoff_s, record.outcome)
        if self.backoff_s:
            gevent.sleep(self.backoff_s)


class DispatchUser(FastHttpUser):
    """Open loop and batch: sends on the plan from greenlets, never waiting for replies."""

    def on_start(self) -> None:
        self.state = _ready_state(self.environment)
        runner = self.environment.runner
        self.slot = max(getattr(runner, "worker_index", 0), 0) % self.state.anchor.dispatchers
        self.llm = _client(self.state, self)
        self.pool = Pool(self.state.settings.load.max_in_flight)
        self.sessions: dict[int, gevent.event.Event] = {}  # replay: each open session's last turn

    def on_stop(self) -> None:
        self.pool.kill()  # what is still running is written `cancelled`

    def _launch(self, launch: Launch) -> None:
        state = self.state
        scheduled_ns = int((state.anchor.perf_s + launch.at_s) * 1e9)
        where: dict[str, int | None] = {}
        if isinstance(launch, ReplayLaunch) and state.replay is not None:
            request, where = state.replay.request(launch, state.settings.repeat)
        else:
            request = state.factory(f"{launch.stage.index}:{launch.index}").next()
        ctx = state.context(launch.stage, scheduled_ns, self.slot, launch.index, **where)
        if self.pool.full():
            cap = state.settings.load.max_in_flight
            assert state.requests is not None
            state.requests.write(ctx.record(Outcome.NOT_SENT, error=f"{cap} requests in flight"))
            return
        if ctx.session is None:
            self.pool.spawn(_send, self.environment, state, self.llm, request, ctx)
            return
        # A trace's session: this turn goes after the session's previous one has ended.
        previous = self.sessions.get(ctx.session)
        done = gevent.event.Event()
        if state.replay is not None and state.replay.last_turn(launch.index):
            self.sessions.pop(ctx.session, None)
        else:
            self.sessions[ctx.session] = done
        self.pool.spawn(self._send_turn, previous, done, request, ctx)

    def _send_turn(
        self,
        previous: gevent.event.Event | None,
        done: gevent.event.Event,
        request: GenRequest,
        ctx: RequestContext,
    ) -> None:
        """Send a session's turn once its previous turn has ended: a conversation goes on
        only after its answer, so the turn is scheduled then if that is after its time."""
        try:
            if previous is not None and not previous.is_set():
                previous.wait()
                ctx = replace(ctx, scheduled_ns=max(ctx.scheduled_ns, time.perf_counter_ns()))
            _send(self.environment, self.state, self.llm, request, ctx)
        finally:
            done.set()

    @task
    def dispatch(self) -> None:
        state = self.state
        load = state.settings.load
        for step in state.dispatch_steps(self.slot):
            if state.stopping:
                break
            if isinstance(step, AwaitRound):
                self.pool.join()
            elif isinstance(step, Wait):
                state.wait_until(step.until_s)
            else:
                self._launch(step)
        self.pool.join(timeout=load.drain_timeout)
        self.pool.kill()  # what is still running is written `cancelled`
        raise StopUser()


class RequestFailed(Exception):
    """Shown in Locust's failure table: the outcome and the server's message (redacted)."""


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


def _help() -> None:
    """`python loadtest/locustfile.py --help`: the `--qb-*` flags Locust's --help omits."""
    parser = argparse.ArgumentParser(
        prog="locust -f loadtest/locustfile.py",
        description="quantbench's flags for Locust (use them with Locust's own: --headless, "
        "--host, --processes, ...; `locust --help` lists those).",
    )
    add_arguments(parser)
    parser.print_help()


__all__ = ["DispatchUser", "LLMUser", "StagesShape", "add_arguments", "settings_from_options"]

if __name__ == "__main__":
    _help()
