"""Config models owned by the load generator: workload, load profile, timeouts, the endpoint.

`quantbench/config.py` composes these into `bench.yaml`; the Locust adapter reads them back
from the settings file the CLI writes (or builds them from `--qb-*` flags).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from loadtest.durations import Duration, PositiveDuration, parse_duration
from loadtest.limits import overload_problem
from loadtest.traces.config import TraceConfig

__all__ = [
    "ArrivalProcess",
    "Duration",
    "EndpointSpec",
    "LengthDist",
    "LoadConfig",
    "LoadMode",
    "LocustSettings",
    "SampleGoal",
    "SearchConfig",
    "SecondsDist",
    "SessionsConfig",
    "SloLimit",
    "StageMode",
    "SweepConfig",
    "TimeoutConfig",
    "WorkloadConfig",
    "load_unit",
    "mode_problem",
    "parse_duration",
]


def _not_bool(value: object) -> object:
    """YAML's `true` is not a number of users or requests/s (pydantic would read it as 1)."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a number")
    return value


StageLoad = Annotated[float, BeforeValidator(_not_bool), Field(gt=0)]


class _Strict(BaseModel):
    # `.inf` and `.nan` in YAML are floats; no duration, rate or length may be one.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LengthDist(_Strict):
    """A token-length distribution; a bare integer in YAML means `fixed`."""

    dist: Literal["fixed", "uniform", "normal", "lognormal"] = "fixed"
    mean: float = Field(gt=0)
    std: float = Field(default=0.0, ge=0)
    min: int = Field(default=1, ge=1)
    max: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _from_int(cls, data: object) -> object:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"dist": "fixed", "mean": data}
        return data

    @model_validator(mode="after")
    def _bounds(self) -> LengthDist:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        if self.dist == "uniform" and self.max is None:
            raise ValueError("a uniform distribution needs max")
        if self.dist in ("normal", "lognormal") and self.std == 0:
            raise ValueError(f"a {self.dist} distribution needs std > 0")
        return self


class SecondsDist(_Strict):
    """A distribution of seconds (a think time); a bare duration (`2s`) means `fixed`.

    `exponential` has mean `mean` (a user who may come back at any moment); `lognormal` is
    parameterised by its own mean and `std`, like token lengths; `uniform` spans [min, max].
    Draws are clipped to [min, max]."""

    dist: Literal["fixed", "uniform", "exponential", "lognormal"] = "fixed"
    mean: Duration
    std: Duration = 0.0
    min: Duration = 0.0
    max: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_scalar(cls, data: object) -> object:
        if isinstance(data, int | float | str) and not isinstance(data, bool):
            return {"dist": "fixed", "mean": data}
        return data

    @model_validator(mode="after")
    def _bounds(self) -> SecondsDist:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max:g} s) is below min ({self.min:g} s)")
        if self.dist == "uniform" and self.max is None:
            raise ValueError("a uniform distribution needs max")
        if self.dist == "lognormal" and (self.std == 0 or self.mean == 0):
            raise ValueError("a lognormal distribution needs mean > 0 and std > 0")
        return self


class SessionsConfig(_Strict):
    """Multi-turn conversations (`loadtest.sessions`): each closed-loop user holds one at a
    time; a turn is sent when the previous answer has arrived and `think_time` has passed,
    with the whole conversation so far as its messages (chat API).

    From `file` (ShareGPT JSON: each conversation's human turns in order, its gpt answers as
    the history and their lengths as the output tokens), or synthetic: `turns` user messages
    of `user_tokens` tokens each, answers of `workload.output_tokens`. `system_prompt_tokens`
    opens every conversation with the same system message (shared by all: a prefix cache
    keeps it). `max_turns` cuts longer conversations of a file."""

    file: Path | None = None
    turns: LengthDist = LengthDist(mean=4)
    user_tokens: LengthDist = LengthDist(mean=64)
    think_time: SecondsDist = SecondsDist(mean=1.0)
    system_prompt_tokens: int = Field(default=0, ge=0)
    max_turns: int | None = Field(default=None, ge=1)


class WorkloadConfig(_Strict):
    """What each request asks for. Prompts are synthetic text of `prompt_tokens` tokens, or
    drawn from `dataset` (JSON lines or ShareGPT); `tokenizer` (a local tokenizer.json) makes
    token counts exact, else the target's `/tokenize` calibrates them when `calibrate`.

    `trace`: a production trace replayed request by request (`load.mode: replay`), each with
    its own lengths; `sessions`: multi-turn conversations (closed loop, chat endpoint)."""

    endpoint: Literal["completions", "chat"] = "chat"
    prompt_tokens: LengthDist = LengthDist(mean=256)
    output_tokens: LengthDist = LengthDist(mean=128)
    dataset: Path | None = None
    tokenizer: Path | None = None
    calibrate: bool = True
    shared_prefix_ratio: float = Field(default=0.0, ge=0, le=0.95)
    seed: int = 0
    trace: TraceConfig | None = None
    sessions: SessionsConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> WorkloadConfig:
        if self.trace is not None and self.sessions is not None:
            raise ValueError(
                "give `trace` or `sessions`, not both (a trace with session ids replays its "
                "turns in order by itself)"
            )
        if self.trace is not None and self.dataset is not None:
            raise ValueError("give `trace` or `dataset`, not both: a trace sets every length")
        if self.sessions is not None and self.endpoint != "chat":
            raise ValueError("sessions send conversations: they need `endpoint: chat`")
        return self


ArrivalProcess = Literal["constant", "poisson", "gamma"]
LoadMode = Literal["concurrency", "rate", "batch", "replay", "search", "sweep"]
StageMode = Literal["concurrency", "rate", "batch", "replay"]
"""How one stage is driven: `search` and `sweep` run stages they choose themselves."""

_LOAD_UNITS: dict[str, tuple[str, str]] = {
    "concurrency": ("user", "users"),
    "rate": ("req/s offered", "req/s offered"),
    "batch": ("request per batch", "requests per batch"),
    "replay": ("× the trace's rate", "× the trace's rate"),
    "search": ("req/s offered", "req/s offered"),
    "sweep": ("load", "load"),
}


def load_unit(mode: str, load: float | None = None) -> str:
    """What a stage's load counts, in words: `users` (`1 user` with `load`), `req/s offered`.

    The one unit table for progress lines, reports and charts; an unknown mode is `load`.
    """
    one, many = _LOAD_UNITS.get(mode, ("load", "load"))
    if load is None:
        return many
    if mode == "replay":  # a rate multiplier: `2× the trace's rate`
        return f"{load:g}{one}"
    return f"{load:g} {one if load == 1 else many}"


def mode_problem(load: LoadConfig, workload: WorkloadConfig) -> str | None:
    """Why the load mode and the workload do not go together (one line naming both), or None:
    `replay` and `workload.trace` come together; sessions need a closed loop."""
    if load.mode == "replay" and workload.trace is None:
        return "load.mode: replay needs workload.trace (the trace file to replay)"
    if workload.trace is not None and load.mode != "replay":
        return f"workload.trace is replayed by load.mode: replay, not {load.mode}"
    if workload.sessions is not None and load.mode != "concurrency":
        return (
            f"workload.sessions run as closed-loop users (load.mode: concurrency), not "
            f"{load.mode}; a trace with session ids replays its turns with load.mode: replay"
        )
    return None


DEFAULT_STAGE_CAP_S = 600.0


class SweepConfig(_Strict):
    """`load.mode: sweep`, as guidellm's: one user (closed loop: the rate of requests one
    at a time), then `max_concurrency` users (the saturated throughput), then `rates`
    open-loop stages spaced evenly from the first rate to the second, the last at it
    (guidellm's `SweepProfile`: `np.linspace(synchronous, throughput, sweep_size - 1)[1:]`).
    A first look that needs no guessed stages.
    """

    rates: int = Field(default=8, ge=1, le=50)
    max_concurrency: int = Field(default=64, ge=2)


class SearchConfig(_Strict):
    """`load.mode: search`: the highest open-loop rate that meets the SLO, to ±`precision`.

    Rate stages from `start` req/s, multiplied (or divided) by `growth` until one stage meets
    the SLO and one breaks it, then bisected until the bracket's half-width is at most
    `precision` of its middle; never below `min_rate` or above `max_rate`, at most
    `max_stages` stages. A stage already clearly over its limits ends early when `early_stop`
    (see `loadtest.slo_counts`).
    """

    start: float = Field(default=1.0, gt=0)
    min_rate: float = Field(default=0.1, gt=0)
    max_rate: float = Field(default=1000.0, gt=0)
    precision: float = Field(default=0.05, gt=0, lt=0.5)
    growth: float = Field(default=2.0, gt=1, le=16)
    max_stages: int = Field(default=16, ge=2, le=100)
    early_stop: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> SearchConfig:
        if self.min_rate >= self.max_rate:
            raise ValueError(
                f"min_rate ({self.min_rate:g}) must be below max_rate ({self.max_rate:g})"
            )
        if not self.min_rate <= self.start <= self.max_rate:
            raise ValueError(
                f"start ({self.start:g} req/s) must lie between min_rate ({self.min_rate:g}) "
                f"and max_rate ({self.max_rate:g})"
            )
        return self


class LoadConfig(_Strict):
    """The load profile: stages, each running `warmup` (excluded) then `stage_duration`, and
    on until it holds the ok samples its percentiles need, at most `max_stage_duration`
    (default: 10 minutes, or `stage_duration` when that is longer; see `loadtest.shapes`).

    `concurrency`: closed loop, N users each sending when its last request ended.
    `rate`: open loop, requests/s on a seeded `arrival` schedule, latency timed from the
    schedule; more than `max_in_flight` outstanding requests are counted `not_sent`.
    `batch`: N requests released together, again when all have ended (offline throughput).
    `replay`: the `workload.trace`, each request at its timestamp (open loop); a stage is the
    whole (windowed, sampled, sped-up) trace at `load` × its rate, so `stages: [1, 2, 4]` is a
    growth sweep; its length is the trace's, `warmup` its first seconds (not measured).
    A stage beyond what the generator processes can time accurately is refused (see
    `loadtest.limits`) unless `allow_overload`.
    """

    mode: LoadMode = "concurrency"
    stages: list[StageLoad] = Field(default=[1, 4, 16], min_length=1)
    stage_duration: PositiveDuration = 30.0
    max_stage_duration: PositiveDuration | None = None
    warmup: Duration = 5.0
    drain_timeout: Duration = 30.0
    arrival: ArrivalProcess = "poisson"
    burstiness: float = Field(default=1.0, gt=0)
    max_in_flight: int = Field(default=1000, ge=1)
    processes: int = Field(default=1, ge=1)  # Locust generator processes (one core each)
    allow_overload: bool = False  # run stages beyond the generator's accuracy figures anyway
    search: SearchConfig | None = None  # `mode: search` (defaults when unset)
    sweep: SweepConfig | None = None  # `mode: sweep` (defaults when unset)

    @model_validator(mode="after")
    def _search_settings(self) -> LoadConfig:
        for name in ("search", "sweep"):
            if getattr(self, name) is not None and self.mode != name:
                raise ValueError(
                    f"load.{name} is set but load.mode is {self.mode}; use mode: {name}"
                )
        if self.mode == "search" and self.search is None:
            self.search = SearchConfig()
        if self.mode == "sweep" and self.sweep is None:
            self.sweep = SweepConfig()
        return self

    def stage_load(self, mode: StageMode, stages: list[float]) -> LoadConfig:
        """This profile with other stages (a search's one rate stage at a time)."""
        update = {"mode": mode, "stages": stages, "search": None, "sweep": None}
        return self.model_copy(update=update)

    @model_validator(mode="after")
    def _whole_users(self) -> LoadConfig:
        if self.mode not in ("rate", "replay", "search", "sweep") and any(
            load != int(load) for load in self.stages
        ):
            raise ValueError(f"{self.mode} stages are counts of requests; use whole numbers")
        return self

    @model_validator(mode="after")
    def _cap_covers_duration(self) -> LoadConfig:
        cap = self.max_stage_duration
        if cap is not None and cap < self.stage_duration:
            raise ValueError(
                f"max_stage_duration ({cap:g} s) is shorter than stage_duration "
                f"({self.stage_duration:g} s); it caps how far a stage is extended"
            )
        return self

    @property
    def stage_cap_s(self) -> float:
        """How long a stage is measured at most, extended for its samples."""
        if self.max_stage_duration is not None:
            return self.max_stage_duration
        return max(DEFAULT_STAGE_CAP_S, self.stage_duration)


class SampleGoal(_Strict):
    """When a stage has sampled enough: `min_ok` ok requests in its measured window, what
    its `percentile` needs (`quantbench run` derives both with the analysis' validity rule:
    59 for a p95, 299 for a p99). A stage whose error rate is above `max_error_rate` (the
    validity limit) is invalid whatever its count, so it is not extended for samples."""

    min_ok: int = Field(default=59, ge=1)
    percentile: str = "p95"
    max_error_rate: float = Field(default=0.01, ge=0, le=1)


class SloLimit(_Strict):
    """An SLO objective the generator judges a stage by (a search's early stop): the
    `quantile` (0–1) of `metric` at most `limit_ms`. Filled from `slo:` by `quantbench run`."""

    metric: Literal["ttft", "tpot", "e2e"]
    quantile: float = Field(gt=0, lt=1)
    limit_ms: float = Field(gt=0)


class TimeoutConfig(_Strict):
    """Per request: `connect`, `ttft` (to the first token), `total`; `ready`: how long a
    target may take to complete its first (probe) generation; `compose_up`: how long
    `docker compose up --wait` may take (image pull, model download and load); `down`: a
    target that gives nothing but connection failures this long is down, and its remaining
    stages are skipped."""

    connect: Duration = 10.0
    ttft: Duration = 60.0
    total: Duration = 300.0
    ready: Duration = 120.0
    compose_up: Duration = 1800.0  # a compose service may download and load a model first
    down: PositiveDuration = 15.0


class EndpointSpec(_Strict):
    """What the load generator needs to know about one target."""

    name: str = "target"
    api: Literal["openai", "tgi"] = "openai"
    stack: Literal["vllm", "tgi", "exllamav2", "other"] = "other"
    model: str | None = None
    api_key_env: str | None = None


class LocustSettings(_Strict):
    """Everything one Locust run needs; written by `quantbench run`, read by the locustfile."""

    endpoint: EndpointSpec = EndpointSpec()
    workload: WorkloadConfig = WorkloadConfig()
    load: LoadConfig = LoadConfig()
    timeouts: TimeoutConfig = TimeoutConfig()
    run_dir: Path = Path("runs/locust")
    goal: SampleGoal = SampleGoal()
    first_stage: int = Field(default=0, ge=0)  # > 0 when a killed run is resumed
    repeat: int = Field(default=0, ge=0)  # which repetition of the sweep this run is
    stage_offset: int = Field(default=0, ge=0)  # the number of this run's stage 0
    tokens_per_word: float | None = Field(default=None, gt=0)  # from the target's /tokenize
    # replay over chat: the tokens the server's chat template adds to a prompt (from the
    # readiness probe), taken off each trace prompt so the server counts the trace's length
    template_tokens: int = Field(default=0, ge=0)
    slo: list[SloLimit] = []  # set: a stage clearly over these limits ends early

    @model_validator(mode="after")
    def _within_limits(self) -> LocustSettings:
        if self.load.mode in ("search", "sweep"):
            raise ValueError(f"load.mode: {self.load.mode} runs through `quantbench run`")
        problem = mode_problem(self.load, self.workload) or overload_problem(
            self.load, self.workload
        )
        if problem is not None:
            raise ValueError(problem)
        return self
