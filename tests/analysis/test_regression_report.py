"""How a change row reads in the terminal, Markdown and JUnit: figures carry their unit."""

from __future__ import annotations

from analysis.regression_report import row_cells

ROW = {"target": "awq", "metric": "ttft_p95", "threshold": 0.05, "stage": 0,
       "mode": "concurrency", "load": 16.0, "label": "TTFT p95",
       "change": 0.359, "low": 0.234, "high": 0.608, "unit": "ms"}  # fmt: skip


def test_a_latency_reads_in_ms_and_a_rate_in_its_unit() -> None:
    cells = row_cells(ROW | {"base": 7.46, "new": 10.1})
    assert cells[3:5] == ["7.46 ms", "10.1 ms"], "a bare 7.46 could be ms or s"
    rate = row_cells(ROW | {"label": "output tok/s", "unit": "tok/s", "base": 1280.0, "new": 980.0})
    assert rate[3:5] == ["1,280 tok/s", "980 tok/s"]
    errors = row_cells(ROW | {"label": "error rate", "unit": "%", "base": 0.0, "new": 0.012})
    assert errors[3:5] == ["0.00%", "1.20%"]
