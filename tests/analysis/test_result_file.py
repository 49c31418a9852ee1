"""result.json against vLLM's `--save-result` field list, written out here from vLLM's own
source (vllm-project/vllm, vllm/benchmarks/serve.py at 009e6d4a1cd6: `main`'s setup keys, the
`result` dict of `benchmark`, `process_one_metric`'s statistics) rather than from ours."""

import json

import pandas as pd
import pytest

from analysis.pipeline import analyze_run
from analysis.result_file import RESULT_FILE
from tests.analysis.helpers import FakeTarget, write_run

VLLM_SETUP = ["date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id",
              "num_prompts", "request_rate", "burstiness", "max_concurrency"]  # fmt: skip
VLLM_RESULT = ["duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
               "request_throughput", "request_goodput", "output_throughput",
               "total_token_throughput"]  # fmt: skip
VLLM_METRICS = ["ttft", "tpot", "itl", "e2el"]  # e2el: vLLM's name for E2E latency


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, pd.DataFrame]:
    root = tmp_path_factory.mktemp("result")
    run_dir = write_run(root, [FakeTarget("awq"), FakeTarget("fp16", quant="fp16")])
    meta = json.loads((run_dir / "run.json").read_text())
    meta["config"]["analysis"] = {"percentiles": [50, 90, 99, 99.9]}
    (run_dir / "run.json").write_text(json.dumps(meta))
    analyze_run(run_dir)
    return json.loads((run_dir / RESULT_FILE).read_text()), pd.read_csv(run_dir / "summary.csv")


def test_every_stage_carries_vllms_fields_with_vllms_types(result: tuple[dict, pd.DataFrame]):
    document, summary = result
    assert document["schema_version"] == 1 and len(document["stages"]) == len(summary)
    metric_fields = [
        f"{stat}_{metric}_ms" for metric in VLLM_METRICS for stat in ("mean", "median", "std")
    ] + [f"{p}_{metric}_ms" for metric in VLLM_METRICS for p in ("p90", "p99", "p99.9")]
    for stage in document["stages"]:
        missing = [f for f in VLLM_SETUP + VLLM_RESULT + metric_fields if f not in stage]
        assert not missing, missing
        for name in ("completed", "failed", "num_prompts", "total_output_tokens"):
            assert isinstance(stage[name], int), name
        for name in ("duration", "request_throughput", "output_throughput", "mean_ttft_ms"):
            assert isinstance(stage[name], float), name
        assert stage["request_rate"] == "inf" and isinstance(stage["max_concurrency"], int)
        assert stage["backend"] in ("openai", "openai-chat", "tgi")


def test_the_figures_are_the_summarys(result: tuple[dict, pd.DataFrame]) -> None:
    document, summary = result
    for stage, row in zip(document["stages"], summary.to_dict("records"), strict=True):
        assert (stage["target"], stage["stage"]) == (row["target"], row["stage"])
        assert stage["completed"] == row["ok"] and stage["failed"] == row["errors"]
        assert stage["request_throughput"] == pytest.approx(row["req_per_s"], abs=1e-3)
        assert stage["output_throughput"] == pytest.approx(row["output_tok_per_s"], abs=1e-3)
        assert stage["median_ttft_ms"] == pytest.approx(row["ttft_p50_ms"], abs=1e-3)
        if pd.isna(row["ttft_p99_ms"]):
            assert stage["p99_ttft_ms"] is None  # too few samples: null, never a number
        else:
            assert stage["p99_ttft_ms"] == pytest.approx(row["ttft_p99_ms"], abs=1e-3)
        assert stage["valid"] == row["valid"]


def test_the_verdicts_are_in_it(result: tuple[dict, pd.DataFrame]) -> None:
    document, _ = result
    verdict = document["verdict"]
    assert verdict["reference"] == "fp16" and verdict["headline"]
    assert sorted(verdict["ranking"]) == ["awq", "fp16"]
    assert {t["name"] for t in document["targets"]} == {"awq", "fp16"}
    assert all(t["capacity"]["status"] for t in document["targets"])
    pairs = verdict["pairs"]
    assert pairs and {"ratio", "low", "high", "verdict"} <= set(pairs[0])
    assert verdict["plan"]["inputs"]["source"] == "config"
