"""The demo's five simulated targets (vLLM AWQ/GPTQ/FP16, TGI AWQ, ExLlamaV2 EXL2) through the
whole pipeline, at short stages: the report compares all of them against the FP16 reference,
plans capacity for each, shows each one's simulated power and energy per output token and
the plan's energy cost, and marks every figure simulated."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd
import pytest
import yaml

from quantbench.cli import main

pytestmark = pytest.mark.slow

TARGETS = ["vllm-awq", "vllm-gptq", "vllm-fp16", "tgi-awq", "exllamav2-exl2"]


def test_demo_targets_end_to_end(tmp_path: Path) -> None:
    demo = yaml.safe_load((resources.files("quantbench") / "examples" / "demo.yaml").read_text())
    assert [t["name"] for t in demo["targets"]] == TARGETS
    demo["load"] = {"stages": [4, 8], "warmup": "0.5s", "stage_duration": "1.5s"}
    demo["analysis"] = {**demo["analysis"], "min_samples_p95": 10}
    demo["slo"] = {**demo["slo"], "percentile": 50}  # short stages: too few samples for p95
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(demo))
    assert main(["run", str(config), "--out", str(tmp_path / "runs")]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()

    summary = pd.read_csv(run_dir / "summary.csv")
    assert sorted(set(summary["target"])) == sorted(TARGETS)
    assert summary["simulated"].all() and (summary["errors"] == 0).all()
    report = (run_dir / "report.md").read_text()
    sections = ["## Comparison at each load", "## Every pair at equal load", "## Errors"]
    sections += ["## Capacity plan", "## Server-side figures"]
    for section in sections:
        assert section in report
    assert "FP16" in report and "vllm-fp16" in report
    assert all(f"{name} (" in report for name in TARGETS)
    for chart in ("latency_cdf.png", "timeline.png", "latency_throughput_all.png"):
        assert (run_dir / "plots" / chart).exists(), chart
    assert report.count("*(simulated)*") >= len(TARGETS)
    assert summary["gpu_j_per_output_token"].notna().all(), "J/token for every target × load"
    gpu = report[report.index("## GPU power and energy (simulated)") :]
    assert all(f"| {name} (" in gpu for name in TARGETS), "each target in the GPU table"
    assert "J/out tok" in gpu and "energy $ per M out tok" in report
    assert "electricity at $0.15 per kWh" in report
    assert (run_dir / "plots" / "gpu_energy.png").exists()
    html = (run_dir / "report.html").read_text()
    assert 'src="http' not in html and "data:image/png;base64," in html
