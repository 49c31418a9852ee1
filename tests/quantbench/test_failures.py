"""One line for what went wrong with a target: a dead target, the dominant failure."""

from __future__ import annotations

import pandas as pd

from quantbench.failures import DownWatch, dominant_failure


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


def frame(rows: list[tuple[str, int | None, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["outcome", "http_status", "error"])


def test_the_dominant_failure_names_status_count_and_the_servers_message() -> None:
    body = (
        '{"error": {"message": "This model\'s maximum context length is 1024 tokens. However, '
        'you requested 1100 tokens.", "type": "BadRequestError", "code": 400}}'
    )
    rows = (
        [("http_error", 400, body)] * 57 + [("http_error", 503, "busy")] * 2 + [("ok", 200, None)]
    )
    assert dominant_failure(frame(rows)) == (
        "400 http_error (57 of 60 requests): This model's maximum context length is 1024 "
        "tokens. However, you requested 1100 tokens."
    )
    refused = [("connect_error", None, "127.0.0.1:9: connection refused")] * 3
    assert dominant_failure(frame(refused)) == (
        "connect_error (3 of 3 requests): 127.0.0.1:9: connection refused"
    )


def test_no_dominant_failure_when_most_requests_are_ok() -> None:
    assert dominant_failure(frame([("ok", 200, None)] * 3 + [("timeout_ttft", None, "")])) is None
    assert dominant_failure(frame([])) is None
