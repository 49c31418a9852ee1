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
    steps = LoadPlan(LoadConfig(stages=[2, 8], warmup=1, stage_duration=4))
    assert steps.tick(0.0) == (2, 20.0)
    assert steps.tick(4.99) == (2, 20.0)
    assert steps.tick(5.0) == (8, 80.0)
    assert steps.tick(9.99) == (8, 80.0)
    assert steps.tick(10.0) is None
    assert steps.stage_at(7.0) is not None and steps.stage_at(7.0).index == 1  # type: ignore[union-attr]
