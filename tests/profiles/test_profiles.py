"""The ready profiles in profiles/: each is a valid bench.yaml whose targets are services of
docker-compose.yml, shaped for its purpose; nightly.yaml has the samples its comment promises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from analysis.change import samples_needed
from loadtest.config import LengthDist
from quantbench.config import BenchConfig, load_config
from tests.simulated_runs import write_simulated_run

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"


def profile(name: str) -> BenchConfig:
    return load_config(PROFILES / f"{name}.yaml")


@pytest.mark.parametrize("name", ["quick", "sweep", "nightly", "capacity"])
def test_profile_is_valid_and_its_targets_are_compose_services(name: str) -> None:
    config = profile(name)
    assert config.name == name
    assert config.compose_file == ROOT / "docker-compose.yml"
    services = yaml.safe_load(config.compose_file.read_text())["services"]
    for target in config.targets:
        assert target.compose in services, f"{name}: {target.name} -> {target.compose}"
        labels = services[target.compose].get("labels") or {}
        if labels.get("io.quantbench.stack") == "tgi":
            assert target.api == "tgi", f"{name}: {target.name} speaks TGI's native API"
    assert any(target.compose == "vllm-fp16" for target in config.targets)  # the reference


def test_every_profile_is_listed_here() -> None:
    stems = {p.stem for p in PROFILES.glob("*.yaml")}
    assert stems == {"quick", "sweep", "nightly", "capacity", "thresholds"}


def test_quick_is_a_first_look_in_minutes() -> None:
    load = profile("quick").load
    per_target_s = len(load.stages) * (load.warmup + load.stage_duration)
    assert per_target_s <= 180 and len(load.stages) >= 3


def test_sweep_doubles_closed_loop_concurrency() -> None:
    load = profile("sweep").load
    assert load.mode == "concurrency" and len(load.stages) >= 6
    assert all(b == 2 * a for a, b in zip(load.stages, load.stages[1:], strict=False))


def test_capacity_is_open_loop_rates_in_ascending_order() -> None:
    load = profile("capacity").load
    assert load.mode == "rate" and load.arrival == "poisson"
    assert load.stages == sorted(load.stages) and len(load.stages) >= 5


def test_nightly_is_one_fixed_load_with_the_samples_its_comment_promises(tmp_path: Path) -> None:
    config = profile("nightly")
    text = (PROFILES / "nightly.yaml").read_text()
    load, workload = config.load, config.workload
    assert load.mode == "concurrency" and len(load.stages) == 1
    assert workload.prompt_tokens == LengthDist(mean=512) and workload.output_tokens.dist == "fixed"
    needed = samples_needed(0.05, 0.35)
    assert f"n ≥ {needed:,} requests per run" in text
    promised = int(re.search(r"give ~([\d,]+) requests", text).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert promised >= needed
    # The arithmetic's request rate, checked on the simulated vLLM AWQ engine (H100 profile):
    # 32 users for 20 simulated seconds, scaled to the profile's measured window.
    users = int(load.stages[0])
    run = write_simulated_run(
        tmp_path,
        "nightly",
        {"vllm-awq": {"stack": "vllm", "quant": "awq", "gpu": "h100"}},
        workload=workload.model_dump(mode="json"),
        load={"mode": "concurrency", "stages": [users], "warmup": 2.0, "stage_duration": 20.0},
    )
    lines = (run / "requests.jsonl").read_text().splitlines()
    measured = sum('"warmup":false' in line for line in lines)
    simulated = measured / 20.0 * load.stage_duration
    print(f"nightly: {simulated:,.0f} simulated requests per run (needs {needed:,})")
    assert simulated >= needed
