import pandas as pd

from analysis.errors import dominant_failure, error_breakdown, failure_text, one_line


def rows(*specs: tuple[str, int, str, int | None, str | None, bool]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"target": t, "stage": s, "outcome": o, "http_status": h, "error": e, "warmup": w}
            for t, s, o, h, e, w in specs
        ]
    )


def test_failures_by_outcome_and_status_with_one_example_each() -> None:
    long = "400 Bad Request:\n  maximum context length is 1024 tokens, " + "x" * 200
    frame = rows(
        ("a", 0, "ok", 200, None, False),
        ("a", 0, "http_error", 503, "overloaded", False),
        ("a", 0, "http_error", 400, long, False),
        ("a", 0, "http_error", 503, "overloaded again", False),
        ("a", 0, "connect_error", None, None, False),
        ("a", 0, "http_error", 500, "in warm-up", True),  # warm-up: not the stage's
        ("a", 1, "aborted", 200, "finish_reason abort", False),  # any outcome, generically
        ("b", 0, "timeout_ttft", None, "no first token in 60 s", False),
    )
    out = error_breakdown(frame)
    assert list(zip(out["target"], out["stage"], out["outcome"], out["count"], strict=True)) == [
        ("a", 0, "http_error", 2),
        ("a", 0, "http_error", 1),
        ("a", 0, "connect_error", 1),
        ("a", 1, "aborted", 1),
        ("b", 0, "timeout_ttft", 1),
    ]
    statuses = [None if pd.isna(v) else int(v) for v in out["http_status"]]
    assert statuses == [503, 400, None, 200, None]
    assert out.loc[0, "example"] == "overloaded"
    example = out.loc[1, "example"]
    assert "\n" not in example and len(example) == 120 and example.endswith("…")
    assert example.startswith("400 Bad Request: maximum context length is 1024 tokens")
    assert out.loc[2, "example"] == ""  # no message recorded
    assert failure_text(out[out["stage"] == 0].loc[out["target"] == "a"]) == (
        "http_error 503 × 2; http_error 400 × 1; connect_error × 1"
    )


def test_no_failures_is_an_empty_breakdown() -> None:
    assert error_breakdown(rows(("a", 0, "ok", 200, None, False))).empty
    assert one_line(None) == "" and one_line(float("nan")) == ""


def test_a_json_or_html_error_body_shows_its_message() -> None:
    frame = rows(
        ("a", 0, "http_error", 400,
         '{"error": {"message": "maximum context length is 1024 tokens", "code": 400}}', False),
        ("a", 0, "http_error", 502, "<html><title>502 Bad Gateway</title><body>...", False),
    )  # fmt: skip
    out = error_breakdown(frame)
    assert list(out["example"]) == ["maximum context length is 1024 tokens", "502 Bad Gateway"]


def failed(rows: list[tuple[str, int | None, str | None]]) -> pd.DataFrame:
    """Requests of one target, two stages, as error_breakdown reads them."""
    return pd.DataFrame(
        {
            "target": "t",
            "stage": [i % 2 for i in range(len(rows))],
            "warmup": False,
            "outcome": [r[0] for r in rows],
            "http_status": [r[1] for r in rows],
            "error": [r[2] for r in rows],
        }
    )


def test_the_dominant_failure_names_status_count_and_the_servers_message() -> None:
    body = (
        '{"error": {"message": "This model\'s maximum context length is 1024 tokens. However, '
        'you requested 1100 tokens.", "type": "BadRequestError", "code": 400}}'
    )
    rows = (
        [("http_error", 400, body)] * 57 + [("http_error", 503, "busy")] * 2 + [("ok", 200, None)]
    )
    assert dominant_failure(error_breakdown(failed(rows)), len(rows)) == (
        "400 http_error (57 of 60 requests): This model's maximum context length is 1024 "
        "tokens. However, you requested 1100 tokens."
    )
    refused = [("connect_error", None, "127.0.0.1:9: connection refused")] * 3
    assert dominant_failure(error_breakdown(failed(refused)), 3) == (
        "connect_error (3 of 3 requests): 127.0.0.1:9: connection refused"
    )


def test_no_dominant_failure_when_most_requests_are_ok() -> None:
    rows = [("ok", 200, None)] * 3 + [("timeout_ttft", None, "")]
    assert dominant_failure(error_breakdown(failed(rows)), 4) is None
    assert dominant_failure(error_breakdown(failed([])), 0) is None
