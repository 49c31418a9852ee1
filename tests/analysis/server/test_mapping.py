import pytest

from analysis.server.mapping import (
    MEASURES,
    STACK_MAPPINGS,
    UnknownStackError,
    mapping_for,
    resolve,
    sample_filter,
    sample_names,
)
from analysis.server.samples import parse_exposition
from tests.analysis.server.data import EXLLAMAV2, TGI, VLLM_033, VLLM_OLD


def names(text: str) -> set[str]:
    return {s.name for s in parse_exposition(text)}


def chosen(stack: str, available: set[str]) -> dict[str, str]:
    return {key: r.name for key, r in resolve(mapping_for(stack), available).items()}


def test_every_stack_maps_only_known_measures() -> None:
    assert set(STACK_MAPPINGS) == {"vllm", "tgi", "exllamav2", "other"}
    for mapping in STACK_MAPPINGS.values():
        assert set(mapping) <= set(MEASURES)


def test_vllm_033_names() -> None:
    got = chosen("vllm", names(VLLM_033))
    assert got == {
        "itl_s": "vllm:inter_token_latency_seconds",
        "prompt_tokens_total": "vllm:prompt_tokens_total",
        "requests_finished_total": "vllm:request_success_total",
        "running": "vllm:num_requests_running",
        "kv_cache_usage": "vllm:kv_cache_usage_perc",
        "process_start_time_s": "process_start_time_seconds",
    }


def test_vllm_finished_requests_leave_out_aborts_and_errors() -> None:
    spec = resolve(mapping_for("vllm"), names(VLLM_033))["requests_finished_total"]
    assert spec.exclude == (("finished_reason", ("abort", "error")),)


def test_pre_011_vllm_names_are_fallbacks_and_new_names_win() -> None:
    old = chosen("vllm", names(VLLM_OLD))
    assert old["itl_s"] == "vllm:time_per_output_token_seconds"
    assert old["kv_cache_usage"] == "vllm:gpu_cache_usage_perc"
    both = chosen("vllm", names(VLLM_OLD) | names(VLLM_033))
    assert both["itl_s"] == "vllm:inter_token_latency_seconds"
    assert both["kv_cache_usage"] == "vllm:kv_cache_usage_perc"


def test_tgi_counter_resolves_in_both_spellings() -> None:
    direct = chosen("tgi", names(TGI))  # the parser's `_total` spelling
    assert direct["requests_finished_total"] == "tgi_request_success_total"
    assert direct["e2e_s"] == "tgi_request_duration"
    assert direct["waiting"] == "tgi_queue_size"
    assert "ttft_s" not in direct, "TGI exports no TTFT histogram"
    stored = chosen("tgi", {"tgi_request_success", "tgi_queue_size"})  # as Prometheus keeps it
    assert stored["requests_finished_total"] == "tgi_request_success"


def test_exllamav2_uses_its_prefix() -> None:
    got = chosen("exllamav2", names(EXLLAMAV2))
    assert got == {
        "ttft_s": "exllamav2:time_to_first_token_seconds",
        "generation_tokens_total": "exllamav2:generation_tokens_total",
    }


def test_other_has_no_mapping_and_unknown_stacks_list_the_known_ones() -> None:
    assert mapping_for("other") == {}
    assert sample_filter("other") is None
    with pytest.raises(UnknownStackError, match="known stacks: exllamav2, other, tgi, vllm"):
        mapping_for("sglang")


def test_sample_filter_keeps_only_mapped_series() -> None:
    keep = sample_filter("tgi")
    assert keep is not None
    assert keep("tgi_request_success_total") and keep("tgi_request_duration_bucket")
    assert not keep("tgi_batch_next_size_bucket"), "1024 buckets nobody maps"
    assert "vllm:time_per_output_token_seconds_sum" in sample_names(mapping_for("vllm"))
