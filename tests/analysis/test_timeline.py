import numpy as np
import pandas as pd
import pytest

from analysis.timeline import timeline
from loadtest.records import StageRecord

S = 1_000_000_000


def stage(index: int, start_s: float, end_s: float, warmup_s: float = 2.0) -> StageRecord:
    # The generator's monotonic clock runs 1000 s behind the wall clock here.
    return StageRecord(
        target="a", stage=index, mode="concurrency", load=2, warmup_s=warmup_s,
        start_wall_s=1000.0 + start_s, end_wall_s=1000.0 + end_s,
        start_ns=int(start_s * S), end_ns=int(end_s * S),
    )  # fmt: skip


def request(sent_s: float, first_s: float, end_s: float, tokens: int = 40) -> dict[str, object]:
    return {
        "target": "a", "stage": 0, "outcome": "ok", "warmup": sent_s < 2.0,
        "sent_ns": int(sent_s * S), "first_token_ns": int(first_s * S),
        "end_ns": int(end_s * S), "output_tokens": tokens, "ttft_ms": (first_s - sent_s) * 1e3,
    }  # fmt: skip


def test_in_flight_tokens_and_ttft_per_bin_on_the_wall_clock() -> None:
    # Two requests: [0, 10) s and [5, 15) s, each 40 tokens spread from 2 s after sending.
    frame = pd.DataFrame([request(0.0, 2.0, 10.0), request(5.0, 7.0, 15.0)])
    line = timeline(frame, [stage(0, 0.0, 20.0)])
    bins = line.bins.set_index("t_s")
    assert line.bin_s == 0.5 and line.start_wall_s == 1000.0
    assert bins.loc[1.0, "in_flight"] == 1 and bins.loc[6.0, "in_flight"] == 2
    assert bins.loc[16.0, "in_flight"] == 0
    # 40 tokens over 8 s = 5 tok/s each; both generating between 7 s and 10 s.
    assert bins.loc[3.0, "output_tok_per_s"] == pytest.approx(5.0)
    assert bins.loc[8.0, "output_tok_per_s"] == pytest.approx(10.0)
    total = (bins["output_tok_per_s"] * line.bin_s).sum()
    assert total == pytest.approx(80.0)  # every token lands in some bin, once
    assert bins.loc[2.0, "ttft_p50_ms"] == pytest.approx(2000.0)
    assert np.isnan(bins.loc[4.0, "ttft_p50_ms"])
    (span,) = line.stages.to_dict("records")
    assert (span["start_s"], span["measure_s"], span["end_s"]) == (0.0, 2.0, 20.0)


def test_server_gauges_share_the_time_axis() -> None:
    gauges = pd.DataFrame(
        {"target": ["a", "a"], "wall_s": [1001.0, 1002.0], "running": [1.0, 2.0],
         "waiting": [0.0, 3.0], "kv_cache_usage": [0.1, 0.5]}
    )  # fmt: skip
    line = timeline(pd.DataFrame([request(0.0, 2.0, 10.0)]), [stage(0, 0.0, 20.0)], gauges)
    assert list(line.server["t_s"]) == [1.0, 2.0] and list(line.server["waiting"]) == [0, 3]
