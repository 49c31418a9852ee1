from loadtest.config import LoadConfig
from loadtest.shapes import LoadPlan


def test_stages_follow_each_other_with_warmup_first() -> None:
    steps = LoadPlan(LoadConfig(stages=[1, 4, 16], warmup=2, stage_duration=10))
    assert steps.total_s == 36
    assert [(s.start_s, s.measure_start_s, s.end_s) for s in steps.stages] == [
        (0, 2, 12),
        (12, 14, 24),
        (24, 26, 36),
    ]


def test_tick_is_a_pure_function_of_time() -> None:
    steps = LoadPlan(LoadConfig(stages=[2, 8], warmup=2, stage_duration=4))
    assert steps.tick(0.0) == (2, 1.0)  # users ramp up over the warm-up
    assert steps.tick(5.99) == (2, 1.0)
    assert steps.tick(6.0) == (8, 4.0)
    assert steps.tick(11.99) == (8, 4.0)
    assert steps.tick(12.0) is None
    assert LoadPlan(LoadConfig(stages=[3], warmup=0, stage_duration=1)).tick(0.0) == (3, 30.0)
    assert steps.stage_at(7.0) is not None and steps.stage_at(7.0).index == 1  # type: ignore[union-attr]


def test_a_resumed_plan_starts_at_its_first_unfinished_stage() -> None:
    plan = LoadPlan(LoadConfig(stages=[1, 4, 16], warmup=1, stage_duration=4), first_stage=1)
    assert [(s.index, s.load, s.start_s, s.end_s) for s in plan.stages] == [
        (1, 4.0, 0, 5),
        (2, 16.0, 5, 10),
    ]
    assert plan.total_s == 10 and plan.stage_at(6.0).index == 2  # type: ignore[union-attr]
