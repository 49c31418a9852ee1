"""`quality:` inside `quantbench run`, end to end on simulator processes and Locust: each target
is probed after its load stages (never during one), quality.json and the chart land in the run
directory and result.json, the report's decision and the plan follow the accuracy bar, a
target without prompt log-probs is not measurable (never zero, never chosen), and a resumed
run probes only what is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from quantbench.cli import main
from tests.analysis.helpers import FakeTarget, write_run

pytestmark = pytest.mark.slow

PROMPTS = "\n".join(f"Prompt {k}: the story of lamp number {k * 3} and" for k in range(12))
# At 4 users the AWQ profile decodes faster than FP16 (~5.3 vs ~7.5 ms a step); tgi-openai (a
# TGI simulator through its OpenAI route, at double speed) is the fastest of all but has no
# prompt log-probs. The SLO holds medians so 1.5 s stages have samples enough.
CONFIG = """\
name: sq
targets:
  - name: fp16
    sim: {stack: vllm, quant: fp16}
  - name: awq
    sim: {stack: vllm, quant: awq}
  - name: tgi-openai
    api: openai
    stack: other
    quant: awq
    sim: {stack: tgi, quant: awq, speed: 2}
workload: {endpoint: completions, prompt_tokens: 32, output_tokens: 8, seed: 1}
load: {stages: [4], warmup: 0.5s, stage_duration: 1.5s}
slo: {ttft_ms: 1000, tpot_ms: 30, percentile: 50}
quality: {window: 128, stride: 64, max_text_tokens: 1600, prompts: prompts.txt, max_tokens: 16}
"""
TARGETS = ["fp16", "awq", "tgi-openai"]


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run-quality")
    (root / "prompts.txt").write_text(PROMPTS + "\n")
    (root / "bench.yaml").write_text(CONFIG)
    assert main(["run", str(root / "bench.yaml"), "--out", str(root / "runs")]) == 0
    (run,) = (root / "runs").iterdir()
    return run


def test_each_target_is_probed_after_its_stages_into_the_run_directory(run_dir: Path) -> None:
    stages = [json.loads(line) for line in (run_dir / "stages.jsonl").read_text().splitlines()]
    probes = {name: _json(run_dir / "quality" / f"{name}.json") for name in TARGETS}
    for k, name in enumerate(TARGETS):
        mine = [s for s in stages if s["target"] == name]
        assert mine and probes[name]["started_wall_s"] >= max(s["end_wall_s"] for s in mine)
        if k + 1 < len(TARGETS):
            following = [s for s in stages if s["target"] == TARGETS[k + 1]]
            assert min(s["start_wall_s"] for s in following) >= probes[name]["ended_wall_s"]

    quality = _json(run_dir / "quality.json")
    by_name = {t["name"]: t for t in quality["targets"]}
    assert quality["reference"] == "fp16" and quality["simulated"] is True
    assert quality["text"]["window"] == 128 and quality["text"]["stride"] == 64
    assert by_name["fp16"]["perplexity"]["value"] < by_name["awq"]["perplexity"]["value"]
    assert by_name["awq"]["ppl_delta"]["value"] == pytest.approx(0.024, abs=0.006)
    windows = {n: [(w["begin"], w["end"], w["asked"]) for w in by_name[n]["windows"]]
               for n in ("fp16", "awq")}  # fmt: skip
    assert windows["fp16"] == windows["awq"] and len(windows["fp16"]) > 5, "identical windows"
    assert by_name["awq"]["agreement"]["first_divergence_median"] is not None, "ids per target"
    other = by_name["tgi-openai"]
    assert other["perplexity"] is None and other["ppl_delta"] is None
    assert "/v1/completions" in other["perplexity_not_measurable"]

    assert (run_dir / "quality.md").read_text().startswith("# Quality (simulated)")
    assert (run_dir / "plots" / "speed_quality.png").stat().st_size > 10_000
    result = _json(run_dir / "result.json")["quality"]
    assert [t["target"] for t in result["targets"]] == TARGETS
    assert result["max_ppl_increase"] is None and result["choice"] is None
    md = (run_dir / "report.md").read_text()
    section = md[md.index("## Speed and quality") : md.index("## Capacity plan")]
    assert "![Speed and quality: perplexity change vs FP16 against load within the SLO " \
           "— simulated](plots/speed_quality.png)" in section  # fmt: skip
    row = next(line for line in section.splitlines() if line.startswith("| tgi-openai"))
    assert "| n/a | not measurable |" in row and "0.00%" not in row


def _headline(run_dir: Path) -> str:
    lines = (run_dir / "report.md").read_text().splitlines()
    return next(line for line in lines if line.startswith("- Accuracy bar"))


def test_the_report_decision_follows_the_bar(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(run_dir), "--max-ppl-increase", "1%"]) == 0
    assert _headline(run_dir).startswith(
        "- Accuracy bar (perplexity ≤ +1.00% vs FP16): **fp16** serves the most load"
    )
    assert "(misses: awq; not measurable: tgi-openai)" in _headline(run_dir)
    assert main(["report", str(run_dir), "--max-ppl-increase", "5%"]) == 0
    assert _headline(run_dir).startswith(
        "- Accuracy bar (perplexity ≤ +5.00% vs FP16): **awq** serves the most load"
    )
    assert _json(run_dir / "result.json")["quality"]["choice"] == "awq"
    capsys.readouterr()


def test_the_plan_excludes_what_misses_the_bar(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    targets = _json(run_dir / "result.json")["verdict"]["plan"]["targets"]
    fastest = max(targets, key=lambda t: t["output_tok_per_s_at_max"] or 0)
    assert fastest["target"] == "tgi-openai", "the cheapest, were it not for the bar"
    try:
        for bar, cheapest, excluded in (("1%", "fp16", {"awq", "tgi-openai"}),
                                        ("5%", "awq", {"tgi-openai"})):  # fmt: skip
            assert main(["plan", str(run_dir), "--peak-rps", "100", "--max-ppl-increase", bar]) == 0
            plan = _json(run_dir / "plan.json")
            assert plan["cheapest"] == cheapest
            assert set(plan["excluded_by_accuracy_bar"]) == excluded
            out = capsys.readouterr().out
            assert "Excluded by the accuracy bar:" in out
            assert "- tgi-openai (other awq) *(simulated)*: not measurable: prompt log-probs" in out
            assert "among the targets that meet the accuracy bar:" in out
    finally:
        for name in ("plan.json", "plan.md"):
            (run_dir / name).unlink(missing_ok=True)


def test_a_resumed_run_probes_only_what_is_missing(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed during awq's probe (its stages finished, no probe file): resuming brings awq up
    for the probe alone, keeps the other probes as they were, and asks the same windows."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "quality" / "awq.json").unlink()
    kept = {n: (copy / "quality" / f"{n}.json").read_bytes() for n in ("fp16", "tgi-openai")}
    assert main(["run", "--resume", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "awq: stages finished, quality probe not: probing it" in out
    assert "fp16: quality probe" not in out
    for name, data in kept.items():
        assert (copy / "quality" / f"{name}.json").read_bytes() == data, name
    before = {t["name"]: t for t in _json(run_dir / "quality.json")["targets"]}
    after = {t["name"]: t for t in _json(copy / "quality.json")["targets"]}
    assert [w["asked"] for w in after["awq"]["windows"]] == [
        w["asked"] for w in before["awq"]["windows"]
    ]
    assert after["awq"]["ppl_delta"]["value"] == pytest.approx(
        before["awq"]["ppl_delta"]["value"], rel=1e-9
    ), "the same seeded simulator, the same windows: the same figure"


def test_a_bar_without_quality_data_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = write_run(tmp_path, [FakeTarget("a")], loads=(1,), window_s=2.0)
    for command in (["plan", str(plain)], ["report", str(plain)]):
        assert main([*command, "--max-ppl-increase", "2%"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "has no quality.json" in err, err
        assert main([*command, "--max-ppl-increase", "lots"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--max-ppl-increase: 'lots' is not a percentage" in err
