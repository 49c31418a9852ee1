"""LoadPlan as a pure function of run time and observed counts, on a scripted clock."""

from loadtest.config import LoadConfig, SampleGoal
from loadtest.shapes import Counts, LoadPlan, SampledStage

ENOUGH = Counts(ok=59)


def test_stages_follow_each_other_with_warmup_first() -> None:
    plan = LoadPlan(LoadConfig(stages=[1, 4, 16], warmup=2, stage_duration=10))
    for t in (0.0, 12.0, 24.0):  # each stage has its samples early: it ends on time
        assert plan.observe(t + 5, ENOUGH) is not None
    assert [(s.start_s, s.measure_start_s, s.end_s, s.ended_by) for s in plan.ended(36.0)] == [
        (0, 2, 12, "duration"),
        (12, 14, 24, "duration"),
        (24, 26, 36, "duration"),
    ]
    assert plan.finished_at(36.0) == 36.0 and plan.stage_at(36.0) is None


def test_tick_is_a_pure_function_of_time_and_counts() -> None:
    plan = LoadPlan(LoadConfig(stages=[2, 8], warmup=2, stage_duration=4))
    assert plan.tick(0.0) == (2, 1.0)  # users ramp up over the warm-up
    plan.observe(5.0, ENOUGH)
    assert plan.tick(5.99) == (2, 1.0)
    assert plan.tick(6.0) == (8, 4.0)
    plan.observe(11.0, ENOUGH)
    assert plan.tick(11.99) == (8, 4.0)
    assert plan.tick(12.0) is None
    assert LoadPlan(LoadConfig(stages=[3], warmup=0, stage_duration=1)).tick(0.0) == (3, 30.0)
    stage = plan.stage_at(7.0)
    assert stage is not None and stage.index == 1


def test_a_short_stage_runs_on_until_its_samples_then_ends_at_once() -> None:
    """The MLPerf LoadGen rule: the minimum duration *and* the minimum count."""
    plan = LoadPlan(LoadConfig(stages=[1, 4], warmup=1, stage_duration=2))
    assert plan.observe(2.9, Counts(ok=20)) is None  # 59 needed
    assert plan.observe(3.0, Counts(ok=21)) is None  # its duration has passed: it runs on
    running = plan.stage_at(30.0)
    assert running is not None and running.index == 0 and running.end_s is None
    ended = plan.observe(41.5, Counts(ok=59))
    assert ended is not None and (ended.end_s, ended.ended_by) == (41.5, "samples")
    after = plan.stage_at(41.5)
    assert after is not None and (after.index, after.start_s, after.min_end_s) == (1, 41.5, 44.5)
    assert plan.tick(41.5) == (4, 4.0)


def test_a_stage_that_cannot_reach_its_count_stops_at_the_cap() -> None:
    load = LoadConfig(stages=[1, 2], warmup=1, stage_duration=2, max_stage_duration=5)
    plan = LoadPlan(load)
    assert plan.observe(5.9, Counts(ok=3)) is None
    first = plan.stage_at(5.99)
    assert first is not None and first.index == 0
    (capped,) = plan.ended(6.0)  # no decision needed: the cap is a function of time
    assert (capped.end_s, capped.ended_by) == (6.0, "cap")
    second = plan.stage_at(6.0)
    assert second is not None and (second.index, second.start_s, second.cap_end_s) == (1, 6, 12)


def test_a_stage_over_its_error_limit_is_not_extended() -> None:
    goal = SampleGoal(min_ok=59, max_error_rate=0.01)
    plan = LoadPlan(LoadConfig(stages=[8], warmup=0, stage_duration=2), rule=SampledStage(goal))
    assert plan.observe(1.0, Counts(ok=10, failed=10)) is None  # before its duration: no call
    ended = plan.observe(2.1, Counts(ok=10, failed=10))
    assert ended is not None and (ended.end_s, ended.ended_by) == (2.1, "errors")


def test_the_goal_is_the_count_asked_for() -> None:
    goal = SampleGoal(min_ok=299, percentile="p99")
    plan = LoadPlan(LoadConfig(stages=[8], warmup=0, stage_duration=2), rule=SampledStage(goal))
    assert plan.observe(3.0, Counts(ok=298)) is None
    assert plan.observe(3.1, Counts(ok=299)) is not None


def test_a_master_decides_ahead_and_workers_apply_its_endings() -> None:
    load = LoadConfig(stages=[1, 2], warmup=0, stage_duration=2)
    master, worker = LoadPlan(load, lead_s=0.5), LoadPlan(load)
    assert master.observe(1.0, ENOUGH).end_s == 2.0  # type: ignore[union-attr]
    master_second = LoadPlan(load, lead_s=0.5)
    ended = master_second.observe(3.0, ENOUGH)  # after its duration: half a second ahead
    assert ended is not None and ended.end_s == 3.5
    for index, ending in master_second.endings().items():
        worker.end_stage(index, ending.end_s, ending.by)
    assert worker.stage_at(3.49).index == 0  # type: ignore[union-attr]
    assert worker.stage_at(3.5).index == 1  # type: ignore[union-attr]


def test_a_resumed_plan_starts_at_its_first_unfinished_stage() -> None:
    plan = LoadPlan(LoadConfig(stages=[1, 4, 16], warmup=1, stage_duration=4), first_stage=1)
    first = plan.stage_at(0.0)
    assert first is not None and (first.index, first.load, first.start_s) == (1, 4.0, 0)
    plan.observe(4.0, ENOUGH)
    assert [(s.index, s.start_s, s.end_s) for s in plan.ended(5.0)] == [(1, 0, 5)]
    assert plan.stage_at(6.0).index == 2  # type: ignore[union-attr]


def test_a_repeat_numbers_its_stages_after_the_previous_ones() -> None:
    plan = LoadPlan(LoadConfig(stages=[1, 4], warmup=0, stage_duration=1), stage_offset=2,
                    repeat=1)  # fmt: skip
    first = plan.stage_at(0.0)
    assert first is not None and (first.index, first.repeat, first.load) == (2, 1, 1.0)


def test_a_search_stage_ends_once_its_slo_verdict_is_clear() -> None:
    """Clearly broken ends it at once; clearly met only from half its duration (a queue that
    builds needs time to show); undecided runs its full duration."""
    from loadtest.shapes import SloStage
    from loadtest.slo_counts import Limit

    rule = SloStage(SampleGoal(), (Limit("ttft", 0.95, 100.0),))
    load = LoadConfig(mode="rate", stages=[4.0], warmup=1, stage_duration=20)
    broken = LoadPlan(load, rule=rule)
    ended = broken.observe(3.0, Counts(30, 0, (30,), (15,)))
    assert ended is not None and (ended.end_s, ended.ended_by) == (3.0, "slo")
    met = LoadPlan(load, rule=rule)
    clear = Counts(400, 0, (400,), (1,))
    assert met.observe(5.0, clear) is None  # clearly met, but before half its duration
    ended = met.observe(11.0, clear)
    assert ended is not None and (ended.end_s, ended.ended_by) == (11.0, "slo")
    close = LoadPlan(load, rule=rule)
    assert close.observe(15.0, Counts(400, 0, (400,), (20,))) is None  # too close to call
    ended = close.observe(21.0, Counts(400, 0, (400,), (20,)))
    assert ended is not None and ended.ended_by == "duration"
