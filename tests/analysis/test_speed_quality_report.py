"""The report's speed-quality section from a run directory with a quality.json: the decision
moves with the accuracy bar, uncertain and not measurable are shown as such, result.json
carries it, and Chromium shows the section with its chart decoded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.pipeline import analyze, analyze_run, load_run
from analysis.plan import Plan, PlanInputs
from analysis.report import render_markdown
from tests.analysis.browser import load_page
from tests.analysis.helpers import FakeTarget, write_run
from tests.analysis.test_speed_quality import quality_doc

CHART = "Speed and quality: perplexity change vs FP16 against load within the SLO — simulated"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    targets = [
        FakeTarget("fp16", quant="fp16", rate_per_user=6.0),
        FakeTarget("awq", rate_per_user=8.0),
        FakeTarget("gptq", quant="gptq", rate_per_user=7.0),
        FakeTarget("other", rate_per_user=12.0),  # the fastest; no prompt log-probs
    ]
    run = write_run(tmp_path_factory.mktemp("sq"), targets, loads=(1, 4), window_s=8.0)
    deltas = {"fp16": (0.0, 0.0, 0.0), "awq": (0.024, 0.019, 0.029),
              "gptq": (0.040, 0.034, 0.046), "other": None}  # fmt: skip
    (run / "quality.json").write_text(json.dumps(quality_doc(deltas)))
    return run


def _section(md: str) -> str:
    return md[md.index("## Speed and quality") : md.index("## Capacity plan")]


def _report(run_dir: Path, bar: float | None) -> tuple[str, Plan]:
    """report.md's text and the plan for `report --max-ppl-increase bar` (nothing written)."""
    analysis = analyze(load_run(run_dir), max_ppl_increase=bar)
    return render_markdown(analysis.report), analysis.plan


def test_the_decision_changes_with_the_bar(run_dir: Path) -> None:
    md, plan = _report(run_dir, 0.01)
    section = _section(md)
    assert "**Accuracy bar +1.00% (from --max-ppl-increase): fp16 (vllm fp16) *(simulated)* " \
           "serves the most load within the SLO per GPU (≥ 19.2 req/s)" in section  # fmt: skip
    assert "- Accuracy bar (perplexity ≤ +1.00% vs FP16): **fp16** serves the most" in md
    assert plan.cheapest == "fp16" and set(plan.excluded) == {"awq", "gptq", "other"}

    md, plan = _report(run_dir, 0.05)
    section = _section(md)
    assert "**Accuracy bar +5.00% (from --max-ppl-increase): awq (vllm awq) *(simulated)* " \
           "serves the most load within the SLO per GPU (≥ 25.6 req/s)" in section  # fmt: skip
    assert plan.cheapest == "awq" and set(plan.excluded) == {"other"}
    assert "| other (vllm awq) *(simulated)* (excluded: accuracy bar) |" in md
    assert "Cheapest per output token among the targets that meet the accuracy bar: awq" in md


def test_uncertain_and_not_measurable_are_shown_as_such(run_dir: Path) -> None:
    result = analyze_run(run_dir, max_ppl_increase=0.025)
    section = _section(result.report_md.read_text())
    assert "| awq (vllm awq) *(simulated)* | 6.144 | +2.40% (+1.9% … +2.9%) | ≥ 25.6 | uncertain |"\
           in section  # fmt: skip
    assert "| other (vllm awq) *(simulated)* | n/a | not measurable | ≥ 38.4 | not measurable | " \
           "prompt log-probs: HTTP 422 |" in section  # fmt: skip
    assert "+0.00%" not in section.split("| other")[1].splitlines()[0], "never a zero"
    document = json.loads(result.result_json.read_text())  # type: ignore[union-attr]
    quality = document["quality"]
    assert quality["max_ppl_increase"] == 0.025 and quality["choice"] == "fp16"
    other = next(t for t in quality["targets"] if t["target"] == "other")
    assert other["ppl_delta"] is None and other["verdict"] == "not measurable"
    assert document["verdict"]["plan"]["excluded_by_accuracy_bar"]["awq"].startswith("uncertain")


def test_the_bar_of_a_plan_is_kept_and_the_flag_overrides_it(run_dir: Path) -> None:
    analyze_run(run_dir, PlanInputs(max_ppl_increase=0.05))  # `quantbench plan`
    try:
        md, plan = _report(run_dir, None)  # a later `quantbench report`: the plan's bar
        assert "Accuracy bar +5.00% (from quantbench plan --max-ppl-increase)" in _section(md)
        assert plan.cheapest == "awq" and plan.inputs.max_ppl_increase == 0.05
        md, plan = _report(run_dir, 0.01)  # `report --max-ppl-increase 1%` overrides it
        assert plan.cheapest == "fp16" and plan.accuracy_bar == 0.01
        assert plan.to_json()["inputs"]["max_ppl_increase"] == 0.05, "the plan's own input"
    finally:
        (run_dir / "plan.json").unlink()
        (run_dir / "plan.md").unlink()


def test_chromium_shows_the_section_and_its_chart(run_dir: Path, tmp_path: Path) -> None:
    result = analyze_run(run_dir, max_ppl_increase=0.02)
    page = load_page(result.report_html, tmp_path / "profile")
    assert [u for u in page.requested if not u.startswith(("file:", "data:"))] == []
    assert "Speed and quality" in page.headings
    assert page.headings.index("Speed and quality") < page.headings.index("Capacity plan")
    assert (CHART, True) in page.images, page.images
    assert (run_dir / "plots" / "speed_quality.png").stat().st_size > 10_000


def test_a_run_without_quality_has_no_section(tmp_path: Path) -> None:
    plain = write_run(tmp_path, [FakeTarget("a")], loads=(1,), window_s=4.0)
    md = analyze_run(plain).report_md.read_text()
    assert "Speed and quality" not in md and not (plain / "plots" / "speed_quality.png").exists()
