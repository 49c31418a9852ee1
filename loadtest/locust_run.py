"""The state of one Locust process's run, kept on its `Environment` (`RunState.of(env)`).

Users, the shape and the listeners of the locustfile read and change the run through this
object instead of module globals: its settings and plan, the time anchor (stage 0's start on
both clocks, shared by the master with its workers), the record writers, the ok and failed
counts of each stage (which decide when an extended stage ends: `loadtest.shapes`), and
which stage windows have been written. Everything here runs inside Locust's gevent world.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import gevent.event

from loadtest.clients.base import RequestContext
from loadtest.config import LocustSettings
from loadtest.dispatch import AwaitRound, Launch, Wait, dispatch_plan
from loadtest.generator_stats import ClientExporter
from loadtest.prompts import DatasetItem, PromptSource, load_dataset
from loadtest.records import (
    REQUESTS_FILE,
    SCHEDULED_FILE,
    STAGES_FILE,
    Outcome,
    RecordWriter,
    RequestRecord,
    StageRecord,
)
from loadtest.replay import (
    ReplayLaunch,
    SessionTurns,
    TracePrompts,
    controlled_trace,
    replay_plan,
    stage_lengths_s,
)
from loadtest.secrets import Redactor
from loadtest.sessions import Conversations, Script, load_conversations
from loadtest.shapes import Counts, LoadPlan, SampledStage, SloStage, StagePlan, StageRule
from loadtest.slo_counts import Limit
from loadtest.traces import Trace
from loadtest.workload import GenRequest, RequestFactory, prompt_source

if TYPE_CHECKING:  # importing locust monkey-patches the process; tests use this without it
    from locust.env import Environment

__all__ = ["Anchor", "RunState", "TraceReplay"]

_ATTRIBUTE = "quantbench_run"


@dataclass
class Anchor:
    """When stage 0 began: `perf_s` on this process's monotonic clock, `wall_s` on the wall
    clock (the master's, sent to workers), and how many dispatchers share the schedule."""

    perf_s: float = 0.0
    wall_s: float = 0.0
    dispatchers: int = 1
    ready: gevent.event.Event = field(default_factory=gevent.event.Event)

    def set(self, perf_s: float, wall_s: float, dispatchers: int) -> None:
        self.perf_s, self.wall_s, self.dispatchers = perf_s, wall_s, max(dispatchers, 1)
        self.ready.set()

    def run_time_s(self, perf_s: float | None = None) -> float:
        return (time.perf_counter() if perf_s is None else perf_s) - self.perf_s


@dataclass
class TraceReplay:
    """`load.mode: replay`: the controlled trace, its sessions' turns and its prompts."""

    trace: Trace
    turns: SessionTurns | None
    prompts: TracePrompts

    def request(
        self, launch: ReplayLaunch, repeat: int = 0
    ) -> tuple[GenRequest, dict[str, int | None]]:
        """The request of a launch and the record fields that place it in the trace; its
        prompt blocks are salted by stage and repeat (`loadtest.replay`)."""
        row = launch.request
        turn = int(self.turns.turn[row.index]) if self.turns is not None else -1
        where = {"trace_row": row.row, "session": row.session, "turn": turn if turn >= 0 else None}
        salt = f"{repeat}:{launch.stage.index}"
        return self.prompts.request(row, salt), where

    def last_turn(self, index: int) -> bool:
        """Whether row `index` is its session's last turn (no later turn waits for it)."""
        return self.turns is not None and bool(self.turns.last[index])


class RunState:
    """One run, as one Locust process (local, master or worker) sees it."""

    def __init__(self, settings: LocustSettings, lead_s: float = 0.0) -> None:
        """`lead_s`: how far ahead a stage's end is decided (a master's workers must hear of
        it before it passes)."""
        self.settings = settings
        workload = settings.workload
        self.prompts: PromptSource = prompt_source(workload, settings.tokens_per_word)
        self.replay: TraceReplay | None = None
        if workload.trace is not None:
            trace = controlled_trace(workload)
            self.replay = TraceReplay(
                trace,
                SessionTurns.of(trace),
                TracePrompts(workload, self.prompts, settings.template_tokens),
            )
        self.limits = tuple(Limit(s.metric, s.quantile, s.limit_ms) for s in settings.slo)
        rule: StageRule = SampledStage(settings.goal)
        if self.limits:
            rule = SloStage(settings.goal, self.limits)
        self.plan = LoadPlan(
            settings.load,
            settings.first_stage,
            rule=rule,
            stage_offset=settings.stage_offset,
            repeat=settings.repeat,
            lead_s=lead_s,
            stage_lengths_s=(
                stage_lengths_s(self.replay.trace, settings.load) if self.replay else None
            ),
        )
        self.counts: dict[int, Counts] = {}  # this process's, per stage
        self.peer_counts: dict[str, dict[int, Counts]] = {}  # a master's: each worker's
        self.decided = gevent.event.Event()  # set (and replaced) when an ending is decided
        self.dataset: list[DatasetItem] | None = (
            load_dataset(workload.dataset) if workload.dataset else None
        )
        sessions = workload.sessions
        self.scripts: list[Script] | None = (
            load_conversations(sessions.file) if sessions and sessions.file else None
        )
        self.redact = Redactor(settings.endpoint.api_key_env)
        self.anchor = Anchor()
        self.exporter = ClientExporter()
        self.requests: RecordWriter | None = None
        self.journal: RecordWriter | None = None
        self.stages: RecordWriter | None = None
        self.stages_written = 0
        self.workers_lost = 0
        self.stopping = False  # set when Locust is told to quit: send nothing new
        self._user_ids = itertools.count()

    @classmethod
    def of(cls, environment: Environment) -> RunState:
        state = cls.find(environment)
        if state is None:
            raise RuntimeError("the quantbench locustfile has not initialised this environment")
        return state

    @classmethod
    def find(cls, environment: Environment) -> RunState | None:
        state = getattr(environment, _ATTRIBUTE, None)
        return state if isinstance(state, RunState) else None

    def attach(self, environment: Environment) -> None:
        setattr(environment, _ATTRIBUTE, self)

    def open_records(self) -> None:
        """Processes that send requests append records and the send journal."""
        run_dir = self.settings.run_dir
        self.requests = RecordWriter(run_dir / REQUESTS_FILE)
        self.journal = RecordWriter(run_dir / SCHEDULED_FILE)

    def open_stages(self) -> None:
        """The process that owns the shape (local or master) writes the stage windows."""
        self.stages = RecordWriter(self.settings.run_dir / STAGES_FILE)

    def next_user_id(self) -> int:
        return next(self._user_ids)

    def factory(self, stream_id: int | str) -> RequestFactory:
        return RequestFactory(self.settings.workload, stream_id, self.prompts, self.dataset)

    def conversations(self, user: int) -> Conversations | None:
        """A closed-loop user's conversations (`workload.sessions`), else None."""
        if self.settings.workload.sessions is None:
            return None
        return Conversations(self.settings.workload, user, self.prompts, self.scripts)

    def dispatch_steps(self, slot: int) -> Iterator[Launch | Wait | AwaitRound]:
        """What dispatcher `slot` sends, and when: the trace (replay) or the schedule."""
        anchor = self.anchor
        if self.replay is not None:
            return replay_plan(
                self.plan, self.replay.trace, anchor.run_time_s, slot, anchor.dispatchers
            )
        seed = self.settings.workload.seed
        load = self.settings.load
        return dispatch_plan(self.plan, load, seed, anchor.run_time_s, slot, anchor.dispatchers)

    def context(
        self,
        stage: StagePlan,
        scheduled_ns: int,
        user: int,
        seq: int,
        *,
        trace_row: int | None = None,
        session: int | None = None,
        turn: int | None = None,
    ) -> RequestContext:
        return RequestContext(
            target=self.settings.endpoint.name,
            stage=stage.index,
            mode=self.plan.mode,
            load=stage.load,
            scheduled_ns=scheduled_ns,
            warmup=self.anchor.run_time_s(scheduled_ns / 1e9) < stage.measure_start_s,
            user=user,
            seq=seq,
            request_id=uuid.uuid4().hex,
            trace_row=trace_row,
            session=session,
            turn=turn,
        )

    def restart_stages(self) -> None:
        self.stages_written = 0

    # -- counts and endings ------------------------------------------------------------------
    def count(self, record: RequestRecord) -> None:
        """A request of the measured window ended: count it toward its stage's goal."""
        if record.warmup:
            return
        figures = [getattr(record, f"{limit.metric}_ms") for limit in self.limits]
        counted = Counts.of(record.outcome is Outcome.OK, figures, self.limits)
        self.counts[record.stage] = self.counts.get(record.stage, Counts()) + counted

    def stage_counts(self, index: int) -> Counts:
        """This process's counts of a stage plus, on a master, every worker's last report."""
        total = self.counts.get(index, Counts())
        for peer in self.peer_counts.values():
            total = total + peer.get(index, Counts())
        return total

    def decide(self) -> StagePlan | None:
        """Where the ending of the running stage is decided (local or master): from its
        counts now. Wakes whatever waits on `decided` when it ends one."""
        run_time = self.anchor.run_time_s()
        stage = self.plan.stage_at(run_time)
        if stage is None or stage.end_s is not None:
            return None
        ended = self.plan.observe(run_time, self.stage_counts(stage.index))
        if ended is not None:
            self.wake()
        return ended

    def wake(self) -> None:
        event, self.decided = self.decided, gevent.event.Event()
        event.set()

    def wait_until(self, run_time_s: float) -> None:
        """Sleep until `run_time_s`, or less when an ending is decided meanwhile."""
        self.decided.wait(timeout=max(run_time_s - self.anchor.run_time_s(), 0.0))

    def counts_message(self) -> dict[str, list[int]]:
        """A worker's counts, as it sends them to its master."""
        return {str(index): c.to_list() for index, c in self.counts.items()}

    def take_peer_counts(self, peer: str, data: dict[str, list[int]]) -> None:
        self.peer_counts[peer] = {int(k): Counts.from_list(v) for k, v in data.items()}

    def endings_message(self) -> dict[str, list[object]]:
        return {str(k): [e.end_s, e.by] for k, e in self.plan.endings().items()}

    def take_endings(self, data: dict[str, list[object]]) -> None:
        """A worker applies its master's decisions (sent again and again: idempotent)."""
        before = len(self.plan.endings())
        for index, (end_s, by) in data.items():
            self.plan.end_stage(int(index), float(end_s), by)  # type: ignore[arg-type]
        if len(self.plan.endings()) != before:
            self.wake()

    # -- stage windows -------------------------------------------------------------------------
    def write_stages(self, until_s: float, completed: bool) -> None:
        """Append the window of every stage that ended before `until_s` and is not yet
        written; with `completed=False` (the test stopped), also the one cut short."""
        if self.stages is None:
            return
        ended, running = self.plan.ended(until_s), self.plan.stage_at(until_s)
        for stage in ended[self.stages_written :]:
            assert stage.end_s is not None
            self.stages.write(self._stage_record(stage, stage.end_s, True))
            self.stages_written += 1
        if completed or running is None or until_s <= running.start_s:
            return
        if self.stages_written == len(ended):  # the stage cut short, once
            self.stages.write(self._stage_record(running, until_s, False))
            self.stages_written += 1

    def _stage_record(self, stage: StagePlan, end_s: float, completed: bool) -> StageRecord:
        anchor = self.anchor
        goal = self.settings.goal
        return StageRecord(
            target=self.settings.endpoint.name,
            stage=stage.index,
            mode=self.plan.mode,
            load=stage.load,
            repeat=stage.repeat,
            ended_by=stage.ended_by if completed else "stopped",
            min_ok=goal.min_ok,
            duration_s=stage.min_end_s - stage.measure_start_s,
            max_duration_s=stage.cap_end_s - stage.measure_start_s,
            warmup_s=stage.measure_start_s - stage.start_s,
            start_wall_s=anchor.wall_s + stage.start_s,
            end_wall_s=anchor.wall_s + end_s,
            start_ns=int((anchor.perf_s + stage.start_s) * 1e9),
            end_ns=int((anchor.perf_s + end_s) * 1e9),
            completed=completed,
            workers_lost=self.workers_lost,
        )
