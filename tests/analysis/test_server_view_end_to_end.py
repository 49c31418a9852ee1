"""Server metrics in a real run: reconciled with the client, and a restart invalidates its stage."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from quantbench.cli import main

pytestmark = pytest.mark.slow


def run(tmp_path: Path, faults: str) -> Path:
    config = tmp_path / "bench.yaml"
    config.write_text(
        "name: server\ntargets:\n"
        f"  - {{name: sim, sim: {{timing: fixed, ttft_ms: 30, itl_ms: 3, faults: {faults}}}}}\n"
        "workload: {prompt_tokens: 16, output_tokens: 8}\n"
        "load: {stages: [4, 4], warmup: 0.5s, stage_duration: 3s}\n"
        "analysis: {min_samples_p95: 20}\n"
    )
    assert main(["run", str(config), "--out", str(tmp_path / "runs")]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


def test_server_figures_reconcile_with_the_client(tmp_path: Path) -> None:
    run_dir = run(tmp_path, "{}")
    server = pd.read_csv(run_dir / "server_stages.csv")
    assert list(server["stage"]) == [0, 1] and not server["restarted"].any()
    assert (server["requests_finished"] > 0).all()
    report = (run_dir / "report.md").read_text()
    assert "## Server-side figures" in report
    assert "## Reconciliation flags\n\nNone raised." in report
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary["valid"].all(), summary["invalid_reason"].tolist()


def test_a_restart_mid_stage_is_flagged_not_averaged_in(tmp_path: Path) -> None:
    run_dir = run(tmp_path, "{restart_at_s: 5.5, restart_down_s: 0.3}")
    summary = pd.read_csv(run_dir / "summary.csv").set_index("stage")
    assert "server restarted" not in str(summary.loc[0, "invalid_reason"])
    assert not summary.loc[1, "valid"]
    assert "server restarted" in summary.loc[1, "invalid_reason"]
    server = pd.read_csv(run_dir / "server_stages.csv").set_index("stage")
    assert bool(server.loc[1, "restarted"]) and not bool(server.loc[0, "restarted"])
    assert 0 <= server.loc[1, "requests_finished"] <= summary.loc[1, "requests"]
