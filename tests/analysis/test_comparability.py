"""Which differences between two runs make them incomparable, and which field is named."""

from __future__ import annotations

from typing import Any

from analysis.comparability import differences, image_digest, target_gpu
from loadtest.run_meta import RunMeta


def meta(**changes: Any) -> RunMeta:
    targets = changes.pop("targets", None) or [
        {
            "name": "vllm-awq",
            "stack": "vllm",
            "quant": "awq",
            "model": "m-awq",
            "compose": {
                "image": {
                    "image": "vllm/vllm-openai:v0.11",
                    "image_id": "sha256:aa",
                    "repo_digest": "vllm/vllm-openai@sha256:11",
                }
            },
        },
        {
            "name": "vllm-fp16",
            "stack": "vllm",
            "quant": "fp16",
            "model": "m",
            "sim": {"stack": "vllm", "quant": "fp16", "gpu": "h100"},
            "simulated": True,
        },
    ]
    config: dict[str, Any] = {
        "workload": {"endpoint": "chat", "prompt_tokens": {"mean": 256}, "seed": 1},
        "load": {"mode": "concurrency", "stages": [16], "stage_duration": 60.0, "processes": 1},
        "slo": {"ttft_ms": 500},
    }
    for section, value in changes.pop("config", {}).items():
        config[section] = config[section] | value
    return RunMeta.model_validate({"config": config, "targets": targets, **changes})


def test_identical_runs_with_other_seeds_hosts_and_processes_are_comparable() -> None:
    other = meta(
        config={"workload": {"seed": 99}, "load": {"processes": 4}}, host={"hostname": "b"}
    )
    assert differences(meta(), other) == ([], [])


def test_a_workload_difference_names_its_field() -> None:
    refusals, _ = differences(meta(), meta(config={"workload": {"prompt_tokens": {"mean": 512}}}))
    assert [r.text() for r in refusals] == [
        "workload.prompt_tokens.mean differs: base 256, new 512"
    ]


def test_a_load_plan_or_slo_difference_is_refused() -> None:
    refusals, _ = differences(meta(), meta(config={"load": {"stages": [16, 32]}}))
    assert refusals[0].field == "load.stages"
    refusals, _ = differences(meta(), meta(config={"slo": {"ttft_ms": 800}}))
    assert refusals[0].field == "slo.ttft_ms"


def test_a_different_target_set_is_refused_with_both_sides() -> None:
    one = meta(targets=[{"name": "vllm-awq"}])
    refusals, _ = differences(meta(), one)
    assert refusals[0].field == "targets"
    assert "only in base: ['vllm-fp16']" in refusals[0].text()


def test_model_quant_and_gpu_differences_are_refused() -> None:
    base = meta()
    targets = [t.model_dump() for t in base.targets]
    targets[0]["model"] = "m-awq-v2"
    targets[1]["sim"] = {"stack": "vllm", "quant": "fp16", "gpu": "a100"}
    refusals, _ = differences(base, meta(targets=targets))
    assert [r.field for r in refusals] == ["target vllm-awq: model", "target vllm-fp16: GPU"]
    assert target_gpu(base, base.targets[1]) == "h100 (simulated)"
    real = meta(host={"gpus": [{"name": "NVIDIA H100 80GB HBM3"}]})
    assert target_gpu(real, real.targets[0]) == "NVIDIA H100 80GB HBM3"


def test_image_digest_policy_warns_or_refuses() -> None:
    base = meta()
    targets = [t.model_dump() for t in base.targets]
    targets[0]["compose"]["image"]["repo_digest"] = "vllm/vllm-openai@sha256:22"
    new = meta(targets=targets)
    assert image_digest(new.targets[0]) == "vllm/vllm-openai@sha256:22"
    refusals, warnings = differences(base, new, "warn")
    assert refusals == [] and [w.field for w in warnings] == ["target vllm-awq: image digest"]
    refusals, warnings = differences(base, new, "refuse")
    assert warnings == [] and "sha256:11" in refusals[0].text()
