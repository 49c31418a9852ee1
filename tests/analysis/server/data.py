"""Hand-written exposition pages of the three stacks, and a scripted run of scrapes.

The pages follow the exact layouts of the simulators (prometheus_client for vLLM and
ExLlamaV2, TGI's hand-rendered exporter); the run script says what each scrape saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from analysis.server.samples import error_record, ok_record, parse_exposition

T0 = 1_795_000_000.0
TTFT_BOUNDS = (0.05, 0.1, 0.25, 0.5)
MODEL = 'model_name="m"'

VLLM_033 = """\
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.7949e+09
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 120.0
# HELP vllm:prompt_tokens_created Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_created gauge
vllm:prompt_tokens_created{engine="0",model_name="m"} 1.7949e+09
# HELP vllm:request_success_total Count of finished requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 7.0
vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} 1.0
# HELP vllm:inter_token_latency_seconds Inter-token latency in seconds.
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{engine="0",le="0.01",model_name="m"} 4.0
vllm:inter_token_latency_seconds_bucket{engine="0",le="+Inf",model_name="m"} 5.0
vllm:inter_token_latency_seconds_count{engine="0",model_name="m"} 5.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="m"} 0.06
vllm:inter_token_latency_seconds_created{engine="0",model_name="m"} 1.7949e+09
"""

# vLLM 0.10 (V1, before the 0.11 rename) and V0: old names, V0 without the engine label.
VLLM_OLD = """\
# HELP vllm:time_per_output_token_seconds Histogram of time per output token in seconds.
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{le="0.01",model_name="m"} 2.0
vllm:time_per_output_token_seconds_bucket{le="+Inf",model_name="m"} 2.0
vllm:time_per_output_token_seconds_count{model_name="m"} 2.0
vllm:time_per_output_token_seconds_sum{model_name="m"} 0.01
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.5
# HELP vllm:num_requests_swapped Number of requests swapped to CPU.
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{model_name="m"} 0.0
"""

TGI = """\
# HELP tgi_request_success Number of successful requests
# TYPE tgi_request_success counter
tgi_request_success 12

# TYPE tgi_request_failure counter
tgi_request_failure{err="overloaded"} 2

# HELP tgi_queue_size Current queue size
# TYPE tgi_queue_size gauge
tgi_queue_size 4

# HELP tgi_request_duration Request duration
# TYPE tgi_request_duration histogram
tgi_request_duration_bucket{le="0.00015000000000000001"} 0
tgi_request_duration_bucket{le="0.49919062500000004"} 9
tgi_request_duration_bucket{le="+Inf"} 12
tgi_request_duration_sum 4.5
tgi_request_duration_count 12

"""

EXLLAMAV2 = """\
# HELP exllamav2:time_to_first_token_seconds Time to first token in seconds.
# TYPE exllamav2:time_to_first_token_seconds histogram
exllamav2:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 1.0
exllamav2:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 3.0
exllamav2:time_to_first_token_seconds_count{model_name="m"} 3.0
exllamav2:time_to_first_token_seconds_sum{model_name="m"} 0.9
exllamav2:time_to_first_token_seconds_created{model_name="m"} 1.7949e+09
# HELP exllamav2:generation_tokens_total Number of generated tokens.
# TYPE exllamav2:generation_tokens_total counter
exllamav2:generation_tokens_total{model_name="m"} 30.0
exllamav2:generation_tokens_created{model_name="m"} 1.7949e+09
"""


@dataclass
class VllmState:
    """What a vLLM server has counted so far (cumulative), and its gauges right now."""

    start: float = 0.0
    length: int = 0
    aborted: int = 0
    prompt: int = 0
    gen: int = 0
    preempted: int = 0
    ttft: list[float] = field(default_factory=list)
    running: float = 0.0
    kv: float = 0.0


def vllm_text(s: VllmState) -> str:
    """A vLLM 0.33 page (prometheus_client layout) for state `s`."""
    labels = f'engine="0",{MODEL}'
    buckets = "".join(
        f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="{b}",{MODEL}}} '
        f"{float(sum(v <= b for v in s.ttft))}\n"
        for b in TTFT_BOUNDS
    )
    return f"""\
# TYPE process_start_time_seconds gauge
process_start_time_seconds {s.start}
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{{labels}}} {s.running}
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{{labels}}} {s.kv}
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{{{labels}}} {float(s.prompt)}
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{{{labels}}} {float(s.gen)}
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{{{labels}}} {float(s.preempted)}
# TYPE vllm:request_success_total counter
vllm:request_success_total{{engine="0",finished_reason="length",{MODEL}}} {float(s.length)}
vllm:request_success_total{{engine="0",finished_reason="abort",{MODEL}}} {float(s.aborted)}
# TYPE vllm:time_to_first_token_seconds histogram
{buckets}\
vllm:time_to_first_token_seconds_bucket{{engine="0",le="+Inf",{MODEL}}} {float(len(s.ttft))}
vllm:time_to_first_token_seconds_count{{{labels}}} {float(len(s.ttft))}
vllm:time_to_first_token_seconds_sum{{{labels}}} {sum(s.ttft)}
vllm:time_to_first_token_seconds_created{{{labels}}} {s.start}
"""


def tgi_text(success: int, queue: int) -> str:
    """A TGI page; before the first request its counter does not exist yet."""
    counter = f"# TYPE tgi_request_success counter\ntgi_request_success {success}\n\n"
    return (counter if success else "") + f"# TYPE tgi_queue_size gauge\ntgi_queue_size {queue}\n"


TGI_SUCCESS = (0, 0, 0, 3, 4, 7, 10, 13, 16, 19, 22)  # the counter appears at 3
PER_SECOND_TTFT = (0.08, 0.12, 0.3, 0.12)  # 4 requests finish each second, 1 aborts every 2 s


def vllm_run(t0: float = T0) -> list[tuple[float, VllmState | None]]:
    """Scrapes at t0 + 0 ... t0 + 10 s; the server restarts after t0 + 7 (that scrape fails)."""
    s = VllmState(start=t0 - 100, length=10, aborted=1, prompt=100, gen=50, ttft=[0.08] * 10)
    out: list[tuple[float, VllmState | None]] = []
    for k in range(11):
        if k == 7:
            out.append((t0 + k, None))
            s = VllmState(start=t0 + 7.2)  # a fresh process: every counter starts over
            continue
        out.append((t0 + k, replace(s, ttft=list(s.ttft))))
        s.length += 4
        s.aborted += k % 2
        s.prompt += 40
        s.gen += 20
        s.preempted += 3 * (k % 2)
        s.ttft += PER_SECOND_TTFT
        s.running, s.kv = float(k % 3), 0.1 * (k % 4)
    return out


def write_run(run_dir: Path, t0: float = T0) -> Path:
    """server_metrics.jsonl of target `v` (vLLM, above) and `t` (TGI, lazy counter)."""
    path = run_dir / "server_metrics.jsonl"
    lines = []
    for wall_s, state in vllm_run(t0):
        if state is None:
            lines.append(error_record("v", wall_s, 0.001, "ConnectError: connection refused"))
        else:
            lines.append(ok_record("v", wall_s, 0.002, parse_exposition(vllm_text(state))))
    for k, success in enumerate(TGI_SUCCESS):
        text = tgi_text(success, queue=k % 2)
        lines.append(ok_record("t", t0 + k + 0.25, 0.002, parse_exposition(text)))
    path.write_text("".join(lines))
    return path
