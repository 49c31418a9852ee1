"""`quantbench quality` end to end on simulator processes: perplexity ordered as the profiles
imply, the same token windows asked of every target, a target without prompt log-probs
reported as not measurable with its reason, FP16 agreeing with itself, and the exit code
following the accuracy bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from quantbench.cli import main

pytestmark = pytest.mark.slow

PROMPTS = "\n".join(f"Prompt {k}: the story of lamp number {k * 3} and" for k in range(12))


def _config(tmp_path: Path, targets: list[dict[str, Any]], **quality: Any) -> Path:
    (tmp_path / "prompts.txt").write_text(PROMPTS + "\n")
    settings = {"window": 128, "stride": 64, "max_text_tokens": 1600, "prompts": "prompts.txt",
                "max_tokens": 24} | quality  # fmt: skip
    for target in targets:
        target.setdefault("sim", {}).setdefault("speed", 50)
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump({"name": "qt", "targets": targets, "quality": settings}))
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    folder = Path(lines[-1]) if lines else None
    data = {}
    if folder is not None and (folder / "quality.json").exists():
        data = json.loads((folder / "quality.json").read_text())
        assert (folder / "quality.md").read_text().startswith("# Quality (simulated)")
    return code, data, captured.err


def _by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in data["targets"]}


def test_quality_across_stacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    targets = [
        {"name": "vllm-fp16", "sim": {"stack": "vllm", "quant": "fp16"}},
        {"name": "vllm-awq", "sim": {"stack": "vllm", "quant": "awq"}},
        {"name": "tgi-gptq", "api": "tgi", "sim": {"stack": "tgi", "quant": "gptq"}},
        {"name": "tgi-fp16", "api": "tgi", "sim": {"stack": "tgi", "quant": "fp16"}},
        # TGI's OpenAI completions route: no prompt log-probs, yet it generates.
        {"name": "tgi-openai", "api": "openai", "stack": "other", "quant": "awq",
         "sim": {"stack": "tgi", "quant": "awq"}},
    ]  # fmt: skip
    code, data, err = _run(
        ["quality", str(_config(tmp_path, targets)), "--out", str(tmp_path)], capsys
    )
    assert code == 0, err
    t = _by_name(data)
    assert data["reference"] == "vllm-fp16" and data["simulated"] is True
    assert data["text"]["window"] == 128 and data["text"]["stride"] == 64
    ppl = {
        n: t[n]["perplexity"]["value"] for n in ("vllm-fp16", "vllm-awq", "tgi-gptq", "tgi-fp16")
    }
    assert ppl["vllm-fp16"] < ppl["vllm-awq"] < ppl["tgi-gptq"], (
        "fp16 < awq (x1.024) < gptq (x1.040)"
    )
    assert ppl["tgi-fp16"] == pytest.approx(ppl["vllm-fp16"], rel=1e-4), "same model, other stack"
    assert t["vllm-awq"]["ppl_delta"]["value"] == pytest.approx(0.024, abs=0.006)
    assert t["vllm-awq"]["ppl_delta"]["significant"]
    # The same windows, the same token ids, asked of every target that could score them.
    asked = {n: [(w["begin"], w["end"], w["asked"]) for w in t[n]["windows"]] for n in ppl}
    assert len({json.dumps(v) for v in asked.values()}) == 1, "identical windows everywhere"
    assert len(asked["vllm-fp16"]) == data["text"]["windows"] > 5
    # Not measurable, with the reason; never a zero.
    other = t["tgi-openai"]
    assert other["perplexity"] is None and other["ppl_delta"] is None
    assert "/v1/completions" in other["perplexity_not_measurable"]
    assert other["agreement"] is not None, "it still generates: agreement is measurable"
    # Agreement: FP16 agrees with FP16 (on another stack too); quantized targets diverge.
    assert t["vllm-fp16"]["agreement"]["exact_match_rate"] == 1.0
    assert t["tgi-fp16"]["agreement"]["exact_match_rate"] == 1.0
    gptq = t["tgi-gptq"]["agreement"]
    assert gptq["exact_match_rate"] < 1.0 and gptq["first_divergence_median"] is not None
    diverged = [p for p in gptq["first_divergence"] if p is not None]
    assert diverged and all(0 <= p < 24 for p in diverged)


def test_the_bar_decides_the_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    targets = [
        {"name": "fp16", "sim": {"stack": "vllm", "quant": "fp16"}},
        {"name": "awq", "sim": {"stack": "vllm", "quant": "awq"}},
    ]
    config = str(_config(tmp_path, targets))
    code, data, err = _run(["quality", config, "--out", str(tmp_path), "--target", "awq",
                            "--max-ppl-increase", "3%"], capsys)  # fmt: skip
    assert code == 0, err
    assert data["meets_bar"] == ["awq"] and _by_name(data)["awq"]["verdict"] == "meets"
    assert "fp16" in _by_name(data), "the reference is added to --target"
    code, data, err = _run(
        ["quality", config, "--out", str(tmp_path), "--max-ppl-increase", "1%"], capsys
    )
    assert code == 1, "a bar the user asked to enforce failed"
    assert data["meets_bar"] == [] and _by_name(data)["awq"]["verdict"] == "misses"


def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    targets = [{"name": "awq", "sim": {"stack": "vllm", "quant": "awq"}}]
    config = str(_config(tmp_path, targets))
    code, _, err = _run(["quality", config, "--max-ppl-increase", "lots"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--max-ppl-increase" in err
    code, _, err = _run(["quality", config, "--max-ppl-increase", "2%"], capsys)
    assert code == 2 and err.count("\n") == 1 and "FP16 reference" in err
    bad = _config(tmp_path, targets, text="missing.txt")
    code, _, err = _run(["quality", str(bad), "--out", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "missing.txt" in err
