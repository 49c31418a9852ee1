import numpy as np
import pandas as pd
import pytest

from analysis.config import AnalysisConfig, SloConfig
from analysis.pairwise import compare_pairs, pair_verdict, swap_pairs
from analysis.summary import StageRequests, TargetInfo, summarize
from loadtest.records import StageRecord

S = 1_000_000_000
SLO = SloConfig(ttft_ms=500, tpot_ms=50)


def requests(specs: dict[tuple[str, int], tuple[float, float, int]], seed: int = 0) -> pd.DataFrame:
    """(target, stage) → (TTFT median ms, TPOT median ms, count), lognormal spread."""
    rng = np.random.default_rng(seed)
    rows = []
    for (target, stage), (ttft, tpot, count) in specs.items():
        ttfts = rng.lognormal(np.log(ttft), 0.25, count)
        tpots = rng.lognormal(np.log(tpot), 0.1, count)
        for i in range(count):
            rows.append(
                {"target": target, "stage": stage, "warmup": False, "outcome": "ok",
                 "output_tokens": 32, "prompt_tokens": 16, "ttft_ms": ttfts[i],
                 "tpot_ms": tpots[i], "e2e_ms": ttfts[i] + 31 * tpots[i],
                 "schedule_lag_ms": 0.0, "itl_ms": [tpots[i]] * 31}
            )  # fmt: skip
    return pd.DataFrame(rows)


def stages(keys: list[tuple[str, int, float, int]]) -> list[StageRecord]:
    """(target, stage, load, repeat) → a 10 s stage record without warm-up."""
    return [
        StageRecord(
            target=t, stage=s, mode="concurrency", load=load, repeat=r, warmup_s=0.0,
            start_wall_s=10.0 * s, end_wall_s=10.0 * s + 10, start_ns=10 * s * S,
            end_ns=(10 * s + 10) * S,
        )
        for t, s, load, r in keys
    ]  # fmt: skip


def pairs_of(frame: pd.DataFrame, records: list[StageRecord], **limits: float) -> pd.DataFrame:
    info = {t: TargetInfo(t, "vllm", t, True) for t in frame["target"].unique()}
    config = AnalysisConfig(**limits)
    summary = summarize(frame, records, info, SLO, config)
    return compare_pairs(StageRequests(frame, SLO), summary, SLO, config)


def test_identical_targets_are_within_noise() -> None:
    frame = requests({("awq", 0): (80, 10, 400), ("gptq", 0): (80, 10, 400)}, seed=1)
    out = pairs_of(frame, stages([("awq", 0, 8, 0), ("gptq", 0, 8, 0)]))
    assert list(out["metric"]) == ["TTFT p50", "TTFT p95", "TPOT p50", "TPOT p95"]
    assert (out["verdict"] == "within noise").all(), out
    assert ((out["low"] < 1) & (out["high"] > 1)).all()
    assert (out[["n_a", "n_b"]] == 400).all().all()


def test_a_fifteen_percent_decode_difference_names_the_faster_one() -> None:
    frame = requests({("awq", 0): (80, 10, 400), ("gptq", 0): (80, 11.5, 400)}, seed=2)
    out = pairs_of(frame, stages([("awq", 0, 8, 0), ("gptq", 0, 8, 0)]))
    tpot = out[out["metric"] == "TPOT p95"].iloc[0]
    assert tpot["verdict"] == "a faster" and tpot["high"] < 1 / 1.05
    assert tpot["ratio"] == pytest.approx(1 / 1.15, rel=0.04)
    verdict = pair_verdict(out, "gptq", "awq")  # asked the other way round
    assert verdict.winner == "awq" and not verdict.mixed and verdict.load == 8
    back = verdict.evidence.set_index("metric")
    assert back.loc["TPOT p95", "ratio"] == pytest.approx(1 / tpot["ratio"])


def test_every_pair_at_every_shared_valid_load() -> None:
    frame = requests(
        {("a", 0): (50, 10, 100), ("b", 0): (50, 10, 100), ("c", 0): (50, 10, 100),
         ("a", 1): (90, 12, 100), ("b", 1): (90, 12, 30), ("c", 1): (90, 12, 100)}
    )  # fmt: skip
    records = stages(
        [("a", 0, 4, 0), ("b", 0, 4, 0), ("c", 0, 4, 0),
         ("a", 1, 16, 0), ("b", 1, 16, 0), ("c", 1, 16, 0)]
    )  # fmt: skip
    out = pairs_of(frame, records)
    at_4 = out[out["load"] == 4]
    assert sorted(set(zip(at_4["a"], at_4["b"], strict=True))) == [
        ("a", "b"), ("a", "c"), ("b", "c"),
    ]  # fmt: skip
    at_16 = out[out["load"] == 16]  # b's 30 requests make its stage invalid: not compared
    assert set(zip(at_16["a"], at_16["b"], strict=True)) == {("a", "c")}


def test_the_spread_between_repeats_widens_the_tie_band() -> None:
    """b is 8% slower in TPOT; with one run each that is a difference, but a's own two
    repeats lie 12% apart, so it is within noise."""
    single = requests({("a", 0): (80, 10, 400), ("b", 0): (80, 10.8, 400)}, seed=3)
    out = pairs_of(single, stages([("a", 0, 8, 0), ("b", 0, 8, 0)]))
    assert out[out["metric"] == "TPOT p95"].iloc[0]["verdict"] == "a faster"
    repeated = requests(
        {("a", 0): (80, 10, 400), ("b", 0): (80, 10.8, 400), ("a", 1): (80, 11.2, 400)}, seed=3
    )
    out = pairs_of(repeated, stages([("a", 0, 8, 0), ("b", 0, 8, 0), ("a", 1, 8, 1)]))
    tpot = out[out["metric"] == "TPOT p95"].iloc[0]
    assert tpot["band"] > 0.1 and tpot["verdict"] == "within noise"
    assert tpot["n_a"] == 800  # the repeats' records are pooled


def test_swapping_a_pair_inverts_ratio_and_interval() -> None:
    rows = pd.DataFrame(
        [{"load": 8.0, "a": "x", "b": "y", "metric": "TPOT p95", "column": "tpot_p95_ms",
          "ratio": 0.8, "low": 0.75, "high": 0.85, "n_a": 100, "n_b": 90, "band": 0.02,
          "verdict": "a faster"}]
    )  # fmt: skip
    (back,) = swap_pairs(rows).to_dict("records")
    assert (back["a"], back["b"], back["n_a"], back["verdict"]) == ("y", "x", 90, "b faster")
    assert back["ratio"] == pytest.approx(1.25)
    assert (back["low"], back["high"]) == (pytest.approx(1 / 0.85), pytest.approx(1 / 0.75))
