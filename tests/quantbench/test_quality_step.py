"""The run's quality step against real simulators, without load stages: a first target that
cannot cut the text into tokens is not probed (with why) and the next one makes the plan;
changes against FP16 wait for the reference; output token ids come from each target's own
route while it is up."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from quantbench.config import BenchConfig
from quantbench.run_quality import QualityStep
from tests.procs import start_sim, stop_sim

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    procs = {}
    for name, stack, quant in (("tgi", "tgi", "awq"), ("fp16", "vllm", "fp16"),
                               ("awq", "vllm", "awq")):  # fmt: skip
        procs[name] = start_sim("--stack", stack, "--quant", quant, "--port", "0")
    yield {name: url for name, (_, url) in procs.items()}
    for proc, _ in procs.values():
        stop_sim(proc)


def test_the_plan_waits_for_a_target_that_can_tokenize(
    urls: dict[str, str], tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"Prompt {k}: the lamp" for k in range(6)) + "\n")
    config = BenchConfig.model_validate({
        "targets": [
            # TGI through its OpenAI route: no /tokenize in the OpenAI shape, no log-probs.
            {"name": "tgi-openai", "url": urls["tgi"], "stack": "other", "quant": "awq"},
            {"name": "awq", "url": urls["awq"], "stack": "vllm", "quant": "awq"},
            {"name": "fp16", "url": urls["fp16"], "stack": "vllm", "quant": "fp16"},
        ],
        "quality": {"window": 64, "stride": 32, "max_text_tokens": 400, "prompts": str(prompts),
                    "max_tokens": 8},
    })  # fmt: skip
    console = Console(file=io.StringIO(), width=200)
    step = QualityStep.for_run(config, config.targets, tmp_path, console)
    assert step is not None and step.reference == "fp16"
    models = {"tgi-openai": "tgi", "awq": "sim/llama-3.1-8b-instruct-awq",
              "fp16": "sim/llama-3.1-8b-instruct-fp16"}  # fmt: skip

    first, awq, fp16 = config.targets
    step.after_stages(first, urls["tgi"], models["tgi-openai"])
    assert not (tmp_path / "quality" / "plan.json").exists(), "it could not cut the text"
    quality = json.loads((tmp_path / "quality.json").read_text())
    entry = quality["targets"][0]
    assert entry["verdict"] == "not measurable" and entry["perplexity"] is None
    assert entry["perplexity_not_measurable"].startswith("no tokenizer: tgi-openai cannot")
    assert "quality.tokenizer" in entry["perplexity_not_measurable"]
    assert quality["text"] is None and not (tmp_path / "quality.md").exists()

    step.after_stages(awq, urls["awq"], models["awq"])
    plan = json.loads((tmp_path / "quality" / "plan.json").read_text())
    assert plan["tokenizer"] == "awq /tokenize" and len(plan["windows"]) > 5
    quality = json.loads((tmp_path / "quality.json").read_text())
    awq_entry = quality["targets"][1]
    assert awq_entry["perplexity"] is not None
    assert awq_entry["ppl_delta_not_measurable"] == "the reference fp16 has not been probed"

    step.after_stages(fp16, urls["fp16"], models["fp16"])
    quality = json.loads((tmp_path / "quality.json").read_text())
    by_name = {t["name"]: t for t in quality["targets"]}
    assert by_name["awq"]["ppl_delta"]["value"] > 0.01
    # Token positions from awq's own route while it was up (the plan's maker, the same).
    assert "first_divergence_not_measurable" not in by_name["awq"]["agreement"]
    assert by_name["awq"]["agreement"]["first_divergence"] is not None
    assert by_name["fp16"]["agreement"]["exact_match_rate"] == 1.0
    assert (tmp_path / "quality.md").read_text().startswith("# Quality")
    mtime = (tmp_path / "quality" / "awq.json").stat().st_mtime_ns
    step.after_stages(awq, urls["awq"], models["awq"])  # already probed: left as it was
    assert (tmp_path / "quality" / "awq.json").stat().st_mtime_ns == mtime
