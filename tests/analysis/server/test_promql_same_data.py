"""The same samples through both paths: the direct scrapes are backfilled into a real
Prometheus (`promtool tsdb create-blocks-from openmetrics`, with `up` as Prometheus would
record it), then PromQL and the direct computation must give the same per-stage figures.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from analysis.server.figures import STAGE_COLUMNS
from analysis.server.prom_client import PrometheusClient
from analysis.server.promql import PromTarget, stage_metrics_from_prometheus
from analysis.server.samples import read_records
from analysis.server.stage_metrics import load_stage_metrics
from tests.analysis.server.data import write_run
from tests.analysis.server.helpers import stage
from tests.analysis.server.live import PROMETHEUS, free_port, wait_for

pytestmark = pytest.mark.slow

PROMTOOL = Path("/usr/bin/promtool")
STACKS = {"v": "vllm", "t": "tgi"}
T0 = float(int(time.time()) - 3600)  # inside Prometheus' retention
STAGES = [
    stage("v", 1, T0 + 0.5, T0 + 5.2),
    stage("v", 2, T0 + 5.5, T0 + 9.6),  # the server restarts inside this one
    stage("t", 1, T0 + 0.5, T0 + 5.2),  # tgi_request_success is born inside this one
    stage("t", 2, T0 + 5.5, T0 + 9.6),
]


def openmetrics(path: Path) -> str:
    """The records as OpenMetrics with timestamps, one family at a time, plus `up`."""
    series: dict[str, dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]] = {}
    for record in read_records(path):
        target, wall_s = record["target"], record["wall_s"]
        up = series.setdefault("up", {}).setdefault((("target", target),), [])
        up.append((wall_s, 1.0 if record["ok"] else 0.0))
        for name, labels, value in record.get("samples", ()):
            key = tuple(sorted({**labels, "target": target}.items()))
            series.setdefault(name, {}).setdefault(key, []).append((wall_s, value))
    lines = []
    for name, by_labels in series.items():
        for labels, points in sorted(by_labels.items()):
            text = ",".join(f'{k}="{v}"' for k, v in labels)
            lines += [f"{name}{{{text}}} {value!r} {wall_s:.3f}" for wall_s, value in points]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def both_paths(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    root = tmp_path_factory.mktemp("backfill")
    run = write_run(root, T0)
    (root / "data.om").write_text(openmetrics(run))
    subprocess.run(
        [str(PROMTOOL), "tsdb", "create-blocks-from", "openmetrics", "data.om", "tsdb"],
        cwd=root, check=True, capture_output=True,
    )  # fmt: skip
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 1s\nscrape_configs: []\n")
    port = free_port()
    proc = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, "the backfilled Prometheus to be ready")
        targets = {name: PromTarget(stack, f'target="{name}"') for name, stack in STACKS.items()}
        with PrometheusClient(base) as client:
            assert not client.left_open_ranges(), f"expected Prometheus 2.x, got {client.version()}"
            prom = stage_metrics_from_prometheus(client, STAGES, targets)
        direct = load_stage_metrics(root, STAGES, STACKS)
        yield direct.set_index(["target", "stage"]), prom.set_index(["target", "stage"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


NUMERIC = [
    c
    for c in STAGE_COLUMNS[4:]
    if c not in ("quantile_method", "restarted", "restart_reason", "note")
]


@pytest.mark.parametrize("key", [("v", 1), ("v", 2), ("t", 2)])
def test_every_figure_agrees(
    both_paths: tuple[pd.DataFrame, pd.DataFrame], key: tuple[str, int]
) -> None:
    direct, prom = (frame.loc[key] for frame in both_paths)
    for column in NUMERIC:
        d, p = float(direct[column]), float(prom[column])
        assert (math.isnan(d) and math.isnan(p)) or p == pytest.approx(d, rel=1e-9, abs=1e-9), (
            f"{key} {column}: direct {d}, prometheus {p}"
        )
    for column in ("restarted", "restart_reason", "note", "quantile_method"):
        assert direct[column] == prom[column], column


def test_both_paths_flag_the_restart(both_paths: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    for frame in both_paths:
        row = frame.loc[("v", 2)]
        assert row["restarted"] and row["requests_finished"] == 8 and row["scrape_errors"] == 1
        assert "process_start_time_seconds changed" in row["restart_reason"]


def test_prometheus_misses_the_first_value_of_a_series_born_in_the_window(
    both_paths: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    direct, prom = (frame.loc[("t", 1)] for frame in both_paths)
    assert direct["requests_finished"] == 4, "absent (0) → 3 → 4"
    # increase() only has 3 → 4 and extrapolates half a scrape interval back: 1.5, not 4.
    assert prom["requests_finished"] == pytest.approx(1.5)
