import pytest

from analysis.config import SloConfig
from analysis.plan import (
    PlanInputError,
    PlanInputs,
    cost_per_million_tokens,
    make_plan,
    parse_number,
    parse_slo,
    plan_inputs,
    replicas_needed,
)
from tests.analysis.helpers import stage_row, summary_of

SLO = SloConfig(ttft_ms=500, tpot_ms=None)


def test_replicas_leave_the_headroom_spare() -> None:
    assert replicas_needed(40, 10, 0.2) == 5  # 40 / 8 usable per GPU
    assert replicas_needed(40, 10, 0.0) == 4
    assert replicas_needed(32, 10, 0.2) == 4  # exactly full: no extra GPU for rounding noise
    assert replicas_needed(1, 100, 0.2) == 1
    with pytest.raises(ValueError):
        replicas_needed(1, 0, 0.2)


def test_cost_per_million_output_tokens() -> None:
    # $2.50 per hour at 1000 tok/s = 3.6 M tokens per hour.
    assert cost_per_million_tokens(2.5, 1000) == pytest.approx(2.5 / 3.6)


def plan_summary():
    return summary_of(
        # a: 300 → 900 ms, crosses 500 ms a third of the way from 4 to 16: 8 req/s, 800 tok/s.
        stage_row("a", 4, ttft_p95_ms=300.0),
        stage_row("a", 16, ttft_p95_ms=900.0),
        # b: within the SLO at every load; 16 req/s and 1600 tok/s is a lower bound.
        stage_row("b", 4, simulated=True),
        stage_row("b", 16, simulated=True),
        # c: fails at the lowest load.
        stage_row("c", 4, ttft_p95_ms=700.0),
    )


def test_plan_per_target_and_the_cheapest() -> None:
    inputs = PlanInputs(slo=SLO, peak_rps=40, gpu_hour_cost=2.5, headroom=0.2)
    plan = make_plan(plan_summary(), inputs)
    a, b, c = plan.targets
    assert (a.max_rps, a.replicas) == (pytest.approx(8.0), 7)  # ceil(40 / 6.4)
    assert a.cost_per_million_tokens == pytest.approx(2.5 / (800 * 3600) * 1e6)
    assert (b.max_rps, b.replicas, b.lower_bound) == (16.0, 4, True)  # ceil(40 / 12.8)
    assert b.cost_per_million_tokens == pytest.approx(2.5 / (1600 * 3600) * 1e6)
    assert (c.max_rps, c.replicas, c.cost_per_million_tokens) == (None, None, None)
    assert plan.cheapest == "b"
    data = plan.to_json()
    assert data["cheapest"] == "b" and data["inputs"]["peak_rps"] == 40
    assert data["targets"][0]["capacity"]["status"] == "interpolated"
    assert data["targets"][1]["max_rps_is_lower_bound"] is True


def test_without_peak_or_price_the_plan_still_ranks_by_tokens_per_gpu() -> None:
    plan = make_plan(plan_summary(), PlanInputs(slo=SloConfig(ttft_ms=350, tpot_ms=None)))
    a, _, _ = plan.targets
    assert a.replicas is None and a.cost_per_million_tokens is None
    assert a.output_tok_per_s == pytest.approx(400 + 1200 * (50 / 600))
    assert plan.cheapest == "b"


def test_no_target_within_the_slo_has_no_cheapest() -> None:
    plan = make_plan(plan_summary(), PlanInputs(slo=SloConfig(ttft_ms=50), peak_rps=10))
    assert plan.cheapest is None and all(t.replicas is None for t in plan.targets)


def test_slo_text_parses_units_and_only_sets_what_is_given() -> None:
    slo = parse_slo("ttft_p95=500ms,tpot_p95=50ms")
    assert (slo.ttft_ms, slo.tpot_ms, slo.e2e_ms) == (500, 50, None)
    assert [o.label for o in slo.objectives()] == ["TTFT p95", "TPOT p95"]
    slo = parse_slo(" TTFT_p95 = 0.5s , e2e_p95=2s")
    assert (slo.ttft_ms, slo.tpot_ms, slo.e2e_ms) == (500, None, 2000)
    assert parse_slo("e2e_p95=1m").e2e_ms == 60_000  # the config's duration grammar


def test_slo_text_takes_any_percentile_per_objective() -> None:
    slo = parse_slo("ttft_p99=2s,tpot_p50=40ms,e2e_p99.9=10s")
    assert [(o.label, o.column, o.limit_ms) for o in slo.objectives()] == [
        ("TTFT p99", "ttft_p99_ms", 2000.0),
        ("TPOT p50", "tpot_p50_ms", 40.0),
        ("E2E p99.9", "e2e_p99.9_ms", 10_000.0),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttft=500ms", "unknown objective 'ttft'; use ttft_pN, tpot_pN or e2e_pN"),
        ("ttft_p100=5ms", "unknown objective 'ttft_p100'"),
        ("ttft_p95=-5ms", "is not a positive duration"),
        ("ttft_p95=0ms", "is not a positive duration"),
        ("ttft_p95=fast", "is not a duration with a unit; write e.g. 500ms or 0.5s"),
        ("ttft_p95=40", "is not a duration with a unit"),  # seconds or ms? refused
        ("ttft_p95", "is not KEY=VALUE"),
        ("ttft_p95=1s,ttft_p99=2s", "TTFT is given twice"),
        (",", "no objective given"),
    ],
)
def test_bad_slo_text_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(PlanInputError, match=r"^--slo: ") as caught:
        parse_slo(text)
    assert message in str(caught.value)


def test_numbers_and_percentages() -> None:
    assert parse_number("--headroom", "20%", percent=True) == pytest.approx(0.2)
    assert parse_number("--peak-rps", "40") == 40.0
    for bad in ("-1", "x", "5%"):
        with pytest.raises(PlanInputError, match=r"^--peak-rps: "):
            parse_number("--peak-rps", bad)
    with pytest.raises(PlanInputError, match=r"^--headroom: input should be less than 1"):
        plan_inputs(slo=SLO, headroom=1.0)
    with pytest.raises(PlanInputError, match=r"^--peak-rps: input should be greater than 0"):
        plan_inputs(slo=SLO, peak_rps=0.0)
