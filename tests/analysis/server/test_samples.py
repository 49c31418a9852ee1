import math
from pathlib import Path

import pytest

from analysis.server.samples import (
    error_record,
    load_samples,
    load_scrapes,
    ok_record,
    parse_exposition,
)
from tests.analysis.server.data import EXLLAMAV2, TGI, VLLM_033, VLLM_OLD


def by_name(text: str, content_type: str = "") -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for sample in parse_exposition(text, content_type):
        out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_vllm_033_page_keeps_exposed_names_and_drops_created() -> None:
    samples = by_name(VLLM_033)
    assert samples["vllm:prompt_tokens_total"] == [({"engine": "0", "model_name": "m"}, 120.0)]
    assert not [name for name in samples if name.endswith("_created")], "_created is noise"
    reasons = {s[0]["finished_reason"]: s[1] for s in samples["vllm:request_success_total"]}
    assert reasons == {"length": 7.0, "abort": 1.0}
    bounds = [labels["le"] for labels, _ in samples["vllm:inter_token_latency_seconds_bucket"]]
    assert bounds == ["0.01", "+Inf"]
    assert samples["process_start_time_seconds"] == [({}, 1.7949e9)]


def test_pre_011_vllm_names_parse_as_exposed() -> None:
    samples = by_name(VLLM_OLD)
    assert samples["vllm:gpu_cache_usage_perc"] == [({"model_name": "m"}, 0.5)]
    assert samples["vllm:time_per_output_token_seconds_count"] == [({"model_name": "m"}, 2.0)]


def test_tgi_counters_without_total_get_the_parsers_total_suffix() -> None:
    samples = by_name(TGI)
    # prometheus_client's parser names every counter sample `_total` (OpenMetrics style);
    # a Prometheus server keeps TGI's `tgi_request_success`: the mapping knows both.
    assert samples["tgi_request_success_total"] == [({}, 12.0)]
    assert samples["tgi_request_failure_total"] == [({"err": "overloaded"}, 2.0)]
    assert "tgi_request_success" not in samples
    assert samples["tgi_queue_size"] == [({}, 4.0)]
    assert samples["tgi_request_duration_bucket"][1] == ({"le": "0.49919062500000004"}, 9.0)
    assert samples["tgi_request_duration_count"] == [({}, 12.0)]


def test_exllamav2_prefix_is_kept() -> None:
    samples = by_name(EXLLAMAV2)
    assert samples["exllamav2:generation_tokens_total"] == [({"model_name": "m"}, 30.0)]
    assert samples["exllamav2:time_to_first_token_seconds_sum"] == [({"model_name": "m"}, 0.9)]


def test_openmetrics_pages_are_parsed_by_content_type() -> None:
    text = "# TYPE x counter\nx_total 3.0\nx_created 1.0\n# EOF\n"
    assert by_name(text, "application/openmetrics-text; version=1.0.0") == {"x_total": [({}, 3.0)]}


def test_keep_filters_sample_names_and_bad_text_raises() -> None:
    kept = parse_exposition(VLLM_033, keep=lambda name: name.startswith("vllm:prompt"))
    assert [s.name for s in kept] == ["vllm:prompt_tokens_total"]
    with pytest.raises(ValueError):
        parse_exposition("# TYPE x counter\nx{le=broken 1\n")


def test_records_load_as_tidy_frames_and_a_partial_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "server_metrics.jsonl"
    path.write_text(
        ok_record("a", 10.0, 0.01, parse_exposition(VLLM_033))
        + error_record("a", 11.0, 0.02, "ConnectError: refused")
        + ok_record("b", 10.5, 0.01, parse_exposition(TGI))
        + '{"target": "a", "wall_s": 12.0, "ok": tr'  # a killed writer's last line
    )
    scrapes = load_scrapes(tmp_path)
    assert scrapes[["target", "wall_s", "ok"]].values.tolist() == [
        ["a", 10.0, True],
        ["a", 11.0, False],
        ["b", 10.5, True],
    ]
    assert scrapes.loc[1, "error"] == "ConnectError: refused"
    frame = load_samples(path, {"vllm:inter_token_latency_seconds_bucket", "tgi_queue_size"})
    assert set(frame["name"]) == {"vllm:inter_token_latency_seconds_bucket", "tgi_queue_size"}
    bucket = frame[frame["name"] == "vllm:inter_token_latency_seconds_bucket"]
    assert bucket["le"].tolist() == [0.01, math.inf]
    assert bucket["labels"].iloc[0] == (("engine", "0"), ("model_name", "m")), "le is a column"
    queue = frame[frame["name"] == "tgi_queue_size"]
    assert queue[["target", "wall_s", "value"]].values.tolist() == [["b", 10.5, 4.0]]
    assert math.isnan(queue["le"].iloc[0])
    assert load_samples(tmp_path / "missing.jsonl").empty
