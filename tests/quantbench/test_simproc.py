"""The simulator gets every setting it was given: the whole model crosses the process
boundary as JSON, and the `quantbench sim` flags (derived from the model) reach every field."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from loadtest.records import Outcome
from quantbench.simproc import sim_arguments
from services.sim.__main__ import build_parser, settings_from_args
from services.sim.config import SimSettings
from services.sim.flags import flag_arguments
from tests.procs import start_sim, stop_sim
from tests.services.sim.test_sim_faults import generate

# Every field of every settings model set away from its default (checked below, so a new field
# added without a value here fails the test instead of escaping it).
EVERYTHING = SimSettings(
    stack="tgi", quant="gptq", gpu="l4", model="m", timing="fixed", ttft_ms=12.5, itl_ms=3.0,
    burst=2,
    max_model_len=2048, max_input_tokens=1000, max_num_seqs=3, max_concurrent_requests=7,
    seed=9, ppl_factor=1.05, disagreement_rate=0.1, speed=4.0,
    request_log="/tmp/log.jsonl", host="127.0.0.2", port=8123,
    faults={
        "times_from": "first_request", "stall_at_s": 1.5, "stall_for_s": 2,
        "errors": [{"status": 429, "rate": 0.02}, {"status": 503, "rate": 0.01}],
        "cut_rate": 0.01, "malformed_rate": 0.005, "fault_after_events": 7, "hang_rate": 0.005,
        "abort_rate": 0.25, "refuse_for_s": 3, "restart_after_requests": 40,
        "restart_down_s": 0.5, "slowdown": 1.5, "seed": 3,
    },
)  # fmt: skip
# restart_at_s and restart_after_requests exclude each other: the second model sets the first.
RESTART_AT = EVERYTHING.model_copy(
    update={"faults": EVERYTHING.faults.model_copy(update={"restart_after_requests": None,
                                                          "restart_at_s": 4.0})}
)  # fmt: skip


def _unset_fields(model: BaseModel, others: list[BaseModel], where: str = "") -> list[str]:
    """Fields equal to their default in `model` and in every one of `others`."""
    found = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            found += _unset_fields(value, [getattr(o, name) for o in others], f"{where}{name}.")
        elif all(getattr(m, name) == info.get_default(call_default_factory=True)
                 for m in [model, *others]):  # fmt: skip
            found.append(where + name)
    return found


def test_the_fixture_sets_every_field() -> None:
    assert _unset_fields(EVERYTHING, [RESTART_AT]) == []


def test_quantbench_run_passes_the_whole_model() -> None:
    for settings in (EVERYTHING, RESTART_AT):
        command = sim_arguments(settings)
        assert command[1:4] == ["-m", "services.sim", "--settings-json"]
        assert settings_from_args(build_parser().parse_args(command[3:])) == settings


def test_every_field_has_a_flag_that_reaches_it() -> None:
    for settings in (EVERYTHING, RESTART_AT):
        flags = flag_arguments(settings)
        assert settings_from_args(build_parser().parse_args(flags)) == settings
    assert "--fault-after-events=7" in flag_arguments(EVERYTHING)


def test_flags_override_the_json() -> None:
    args = build_parser().parse_args(
        [*sim_arguments(EVERYTHING)[3:], "--cut-rate", "0", "--port", "0"]
    )
    settings = settings_from_args(args)
    assert (settings.faults.cut_rate, settings.port) == (0.0, 0)
    assert settings.faults.fault_after_events == 7, "the rest comes from the JSON"


def test_fault_after_events_reaches_a_running_simulator() -> None:
    """It had no flag: a bench.yaml that set it was recorded in run.json and never applied."""
    settings = SimSettings(
        timing="fixed", ttft_ms=2, itl_ms=1, faults={"cut_rate": 1, "fault_after_events": 5}
    )
    proc, url = start_sim(*sim_arguments(settings)[3:])
    try:
        record: Any = generate(url, max_tokens=20)
    finally:
        stop_sim(proc)
    assert record.outcome is Outcome.TRUNCATED_STREAM
    assert record.events == 5
