"""A target that went down: nothing but connection failures for a while."""

from __future__ import annotations

from quantbench.failures import DownWatch


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def test_a_target_is_down_after_only_connection_failures_for_a_while() -> None:
    clock = Clock()
    watch = DownWatch(after_s=10.0, clock=clock)
    watch.feed("connect_error", "refused")
    clock.now_s = 30.0
    assert watch.down_for() is None, "one failure is not a pattern"
    watch.feed("timeout_connect", "connect timed out")
    assert watch.down_for() == 30.0 and watch.last_error == "connect timed out"


def test_any_answer_from_the_server_resets_the_watch() -> None:
    clock = Clock()
    watch = DownWatch(after_s=10.0, clock=clock)
    for second in range(9):
        clock.now_s = float(second)
        watch.feed("connect_error", "refused")
    watch.feed("http_error", "503")  # the server answered: it restarted
    clock.now_s = 12.0
    watch.feed("connect_error", "refused")
    watch.feed("connect_error", "refused")
    assert watch.down_for() is None
    clock.now_s = 22.0
    assert watch.down_for() == 10.0
