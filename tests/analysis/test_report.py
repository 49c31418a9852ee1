import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from analysis.config import SloConfig
from analysis.pipeline import AnalysisResult, analyze_run
from analysis.plots import latency_throughput_figure, throughput_load_figure
from analysis.report import Flag, ReportInput, render_html, render_markdown
from loadtest.records import REQUESTS_FILE, Outcome, RequestRecord
from tests.analysis.browser import load_page
from tests.analysis.helpers import FakeTarget, S, write_run

SECTIONS = [
    "What was measured", "Comparison at each load", "Every pair at equal load",
    "Highest load within the SLO", "Capacity plan", "Charts", "Errors",
    "Per-stage statistics", "Stage validity", "Reconciliation flags", "Run",
]  # fmt: skip
CHARTS = [
    "Latency vs throughput, all targets — simulated",
    "Throughput vs load, all targets — simulated",
    "Latency distributions (CDF) per load — simulated",
    "The run over time — simulated",
]


def _failure(stage: int, outcome: Outcome, status: int | None, error: str | None) -> str:
    at = int((13 * stage + 5) * S)  # inside stage `stage` of the first target's window
    return RequestRecord(
        target="simmed", stage=stage, mode="concurrency", load=4, outcome=outcome,
        http_status=status, error=error, scheduled_ns=at, sent_ns=at,
    ).model_dump_json()  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> AnalysisResult:
    root = tmp_path_factory.mktemp("report")
    targets = [
        FakeTarget("simmed", simulated=True),
        FakeTarget("real", quant="fp16", simulated=False),
    ]
    run_dir = write_run(root, targets, loads=(1, 4, 16))
    failures = [_failure(1, Outcome.HTTP_ERROR, 503, "Service Unavailable: overloaded")] * 3
    failures += [_failure(1, Outcome.CONNECT_ERROR, None, "ConnectError: [Errno 111] refused")]
    with (run_dir / REQUESTS_FILE).open("a") as out:
        out.write("\n".join(failures) + "\n")
    return analyze_run(run_dir)


def test_html_is_one_self_contained_file(result: AnalysisResult) -> None:
    page = result.report_html.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "external asset"
    assert "<link" not in page and "<script" not in page and "@import" not in page
    images = re.findall(r"<img [^>]*src=\"([^\"]*)\"", page)
    assert len(images) == len(CHARTS)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert "name='viewport'" in page and "overflow-x:auto" in page and "max-width:100%" in page
    for section in SECTIONS:
        assert f">{section}</h2>" in page, section


def test_chromium_renders_the_report_offline_with_every_chart(
    result: AnalysisResult, tmp_path: Path
) -> None:
    """The reader's view: Debian's headless Chromium opens report.html from disk, the page
    asks for nothing but itself and its embedded images, and every chart decodes."""
    page = load_page(result.report_html, tmp_path / "profile")
    outside = [url for url in page.requested if not url.startswith(("file:", "data:"))]
    assert outside == [], outside
    assert page.requested[0] == result.report_html.resolve().as_uri()[:64]
    assert page.title == "quantbench report — test (simulated)"
    assert page.headings == SECTIONS
    assert page.images == [(chart, True) for chart in CHARTS]
    assert page.tables >= 8 and page.screenshot.startswith(b"\x89PNG")


def test_the_error_breakdown_names_outcome_status_count_and_an_example(
    result: AnalysisResult,
) -> None:
    md = result.report_md.read_text()
    errors = md[md.index("## Errors") : md.index("## Per-stage statistics")]
    assert "| simmed (vllm awq) *(simulated)* | 1 | 4 | http_error | 503 | 3 |" in errors
    assert "`Service Unavailable: overloaded`" in errors
    assert "| connect_error | — | 1 |" in errors
    row = result.summary[(result.summary["target"] == "simmed") & (result.summary["stage"] == 1)]
    assert row["error_breakdown"].iloc[0] == "http_error 503 × 3; connect_error × 1"


def test_every_pair_at_every_load_with_each_figure(result: AnalysisResult) -> None:
    md = result.report_md.read_text()
    pairs = md[md.index("## Every pair at equal load") : md.index("## Highest load")]
    assert "At 1 user:" in pairs and "At 16 users:" in pairs
    assert "At 4 users" not in pairs  # simmed's stage there is invalid (3% errors): no pair
    header = "| pair | TTFT p50 | TTFT p95 | TPOT p50 | TPOT p95 |"
    assert pairs.count(header) == 2
    row = "| simmed (vllm awq) *(simulated)* ÷ real (vllm fp16) | ≈ 1.00× ("
    assert pairs.count(row) == 2  # the same fake latencies: within noise


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
        legend = [t.get_text() for t in figure.legends[0].get_texts()]
        assert legend == ["simmed [vllm awq] (simulated)", "real [vllm fp16]"]
        plt.close(figure)
    assert all("simulated" in alt for alt in result.report_md.read_text().split("![")[1:])
    charts = sorted(path.name for path in (result.report_md.parent / "plots").iterdir())
    assert charts == [
        "latency_cdf.png", "latency_throughput_all.png", "throughput_load_all.png", "timeline.png"
    ]  # fmt: skip


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
        title="t",
        headline=["line"],
        summary=result.summary,
        meta=[("run", "x")],
        flags=[Flag("simmed", 1, "server counted 12% fewer requests than the client")],
    )
    md = render_markdown(report)
    assert "## Reconciliation flags" in md
    assert "| simmed (vllm awq) *(simulated)* | 1 | server counted 12% fewer" in md
    assert "None raised." not in md
    empty = ReportInput(title="t", headline=[], summary=result.summary)
    assert "None raised." in render_html(empty)
