import math

import pandas as pd
import pytest

from analysis.server.figures import new_row
from analysis.server.reconcile import RECONCILE_COLUMNS, client_figures, reconcile


def server_row(
    target: str, stage: int, finished: float, ttft_mean_ms: float, **extra: object
) -> dict[str, object]:
    row = new_row(target, stage, "vllm", "scrape", (0.0, 10.0))
    row.update(
        requests_finished=finished, ttft_mean_ms=ttft_mean_ms, ttft_p50_ms=175.0, ttft_p95_ms=450.0
    )
    row.update(extra)
    return row


def client(*rows: tuple[str, int, int, float]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["target", "stage", "ok", "ttft_mean_ms"])


def test_agreeing_figures_are_not_flagged() -> None:
    server = pd.DataFrame([server_row("a", 1, 200, 105.0)])
    out = reconcile(server, client(("a", 1, 199, 100.0)))
    assert list(out.columns) == RECONCILE_COLUMNS
    row = out.iloc[0]
    assert not row["flagged"] and row["reason"] == ""
    assert row["requests_diff_pct"] == pytest.approx(100 / 199)
    assert row["ttft_mean_diff_pct"] == pytest.approx(5.0)
    assert row["server_ttft_p95_ms"] == 450.0 and math.isnan(row["client_ttft_p95_ms"])
    assert row["server_quantile_method"] == "bucket-interpolated"


def test_counts_more_than_one_percent_apart_are_flagged_with_the_reason() -> None:
    out = reconcile(pd.DataFrame([server_row("a", 1, 98, 100.0)]), client(("a", 1, 100, 100.0)))
    row = out.iloc[0]
    assert row["flagged"] and row["requests_mismatch"] and not row["ttft_mismatch"]
    assert row["reason"] == (
        "server counted 98 finished requests, client 100 ok (-2.0%, more than 1% apart)"
    )


def test_ttft_more_than_ten_percent_apart_is_flagged() -> None:
    out = reconcile(pd.DataFrame([server_row("a", 1, 100, 120.0)]), client(("a", 1, 100, 100.0)))
    row = out.iloc[0]
    assert (
        row["ttft_mismatch"]
        and "server mean TTFT 120.0 ms, client 100.0 ms (+20.0%" in row["reason"]
    )


def test_restarts_missing_series_and_missing_rows() -> None:
    server = pd.DataFrame(
        [
            server_row("a", 1, 100, 100.0, restarted=True, restart_reason="counter reset in x"),
            server_row("tgi", 1, 50, math.nan),
            server_row("a", 2, 10, 100.0),
        ]
    )
    clients = client(("a", 1, 100, 100.0), ("tgi", 1, 50, 80.0), ("b", 1, 5, 10.0))
    out = reconcile(server, clients).set_index(["target", "stage"])
    assert out.loc[("a", 1), "flagged"]
    assert out.loc[("a", 1), "reason"] == "server restarted in the window (counter reset in x)"
    tgi = out.loc[("tgi", 1)]
    assert not tgi["flagged"] and "no TTFT histogram" in tgi["reason"]
    assert out.loc[("a", 2), "reason"] == "no client figures for this stage"
    assert out.loc[("b", 1), "reason"] == "no server figures for this stage"
    assert not out.loc[("b", 1), "flagged"]


def test_client_columns_are_checked() -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        reconcile(pd.DataFrame([server_row("a", 1, 1, 1.0)]), pd.DataFrame({"target": ["a"]}))


def test_client_figures_count_requests_that_ended_ok_inside_the_window() -> None:
    from tests.analysis.server.helpers import stage

    s = stage("a", 1, 10.0, 20.0)  # start_ns 0 (warm-up 0.2 s), end_ns 10.2 s
    requests = pd.DataFrame(
        {
            "target": ["a", "a", "a", "a", "b"],
            "outcome": ["ok", "ok", "http_error", "ok", "ok"],
            "end_ns": [0.1e9, 5e9, 6e9, 10.2e9, 5e9],  # the first ended in the warm-up
            "ttft_ms": [1.0, 100.0, None, 200.0, 7.0],
        }
    )
    out = client_figures(requests, [s]).iloc[0]
    assert (out["target"], out["stage"], out["ok"]) == ("a", 1, 2)
    assert out["ttft_mean_ms"] == 150.0 and out["ttft_p50_ms"] == 150.0
    assert math.isnan(out["ttft_p95_ms"]), "2 samples cannot support a p95"
    # With the server's own (wall-clock) window, the client counts over that interval instead.
    requests["sent_ns"] = 0.0
    requests["wall_sent_s"] = 1000.0  # end wall = 1000 + end_ns / 1e9
    windowed = client_figures(requests, [s], {("a", 1): (1004.0, 1011.0)}).iloc[0]
    assert windowed["ok"] == 2 and windowed["ttft_mean_ms"] == 150.0  # ended at 1005, 1010.2
