import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from analysis.config import SloConfig
from analysis.pipeline import AnalysisResult, analyze_run
from analysis.plots import latency_throughput_figure, throughput_load_figure
from analysis.report import Flag, ReportInput, render_html, render_markdown
from tests.analysis.helpers import FakeTarget, write_run


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> AnalysisResult:
    root = tmp_path_factory.mktemp("report")
    targets = [
        FakeTarget("simmed", simulated=True),
        FakeTarget("real", quant="fp16", simulated=False),
    ]
    return analyze_run(write_run(root, targets, loads=(1, 4, 16)))


def test_html_is_one_self_contained_file(result: AnalysisResult) -> None:
    page = result.report_html.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "external asset"
    assert "<link" not in page and "<script" not in page and "@import" not in page
    images = re.findall(r"<img [^>]*src=\"([^\"]*)\"", page)
    assert len(images) == 4  # latency and throughput for all targets, latency per target
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert "name='viewport'" in page and "overflow-x:auto" in page and "max-width:100%" in page
    sections = ["Comparison at each load", "Highest load within the SLO", "Capacity plan"]
    sections += ["Per-stage statistics", "Stage validity", "Reconciliation flags", "Run"]
    for section in sections:
        assert f">{section}</h2>" in page, section


def test_simulated_targets_are_labelled_everywhere(result: AnalysisResult) -> None:
    for path in (result.report_md, result.report_html):
        text = path.read_text()
        assert "quantbench report — test (simulated)" in text
        simulated = "*(simulated)*" if path.suffix == ".md" else "<i>(simulated)</i>"
        rows = [line for line in text.splitlines() if "simmed" in line]
        assert rows and all(simulated in line for line in rows if "|" in line), path
    md = result.report_md.read_text()
    assert all("simulated" not in line for line in md.splitlines() if line.startswith("| 1 | real"))
    summary = result.summary
    for figure in (
        latency_throughput_figure(summary, "t", SloConfig()),
        throughput_load_figure(summary, "t"),
    ):
        legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
        assert legend == ["simmed [vllm awq] (simulated)", "real [vllm fp16]"]
        plt.close(figure)
    assert all("simulated" in alt for alt in result.report_md.read_text().split("![")[1:])


def test_report_opens_with_the_verdict_and_compares_with_the_fp16_reference(
    result: AnalysisResult,
) -> None:
    md = result.report_md.read_text()
    first = md.splitlines()[2]
    assert first.startswith("- **")  # the verdict comes before any table
    assert "Against the reference real (vllm fp16) (the FP16 target)" in md
    assert "Capacity plan (TTFT p95 ≤ 200 ms, TPOT p95 ≤ 30 ms)" in md
    assert result.plan is not None and result.plan.inputs.source == "config"
    assert result.plan_md is None and not (result.report_md.parent / "plan.json").exists()


def test_reconciliation_flags_are_rendered(result: AnalysisResult, tmp_path: Path) -> None:
    report = ReportInput(
        "t",
        ["line"],
        result.summary,
        {},
        [("run", "x")],
        flags=[Flag("simmed", 1, "server counted 12% fewer requests than the client")],
    )
    md = render_markdown(report)
    assert "## Reconciliation flags" in md
    assert "| simmed (vllm awq) *(simulated)* | 1 | server counted 12% fewer" in md
    assert "None raised." not in md
    assert "None raised." in render_html(ReportInput("t", [], result.summary, {}, []))
