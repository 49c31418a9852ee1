"""TGI's `tgi_request_mean_time_per_token_duration` is inference time (from batch start, so
prefill included) divided by all generated tokens (router/src/server.rs): not a TPOT. The
server figures keep it apart from the TPOT columns the client's TPOT is compared with."""

from __future__ import annotations

from analysis.server.figures import STAGE_COLUMNS
from analysis.server.mapping import mapping_for, resolve


def _resolved(stack: str, histogram: str) -> dict[str, str]:
    available = {f"{histogram}{suffix}" for suffix in ("_bucket", "_sum", "_count")}
    return {key: r.name for key, r in resolve(mapping_for(stack), available).items()}


def test_tgi_time_per_token_is_its_own_measure_not_tpot() -> None:
    tgi = _resolved("tgi", "tgi_request_mean_time_per_token_duration")
    assert tgi == {"inference_per_token_s": "tgi_request_mean_time_per_token_duration"}


def test_vllm_like_stacks_fill_tpot_with_a_true_per_request_tpot() -> None:
    for stack, prefix in (("vllm", "vllm:"), ("exllamav2", "exllamav2:")):
        name = f"{prefix}request_time_per_output_token_seconds"
        assert _resolved(stack, name) == {"tpot_s": name}


def test_stage_figures_have_separate_columns() -> None:
    assert {"tpot_mean_ms", "inference_per_token_mean_ms", "inference_per_token_p95_ms"} <= set(
        STAGE_COLUMNS
    )
