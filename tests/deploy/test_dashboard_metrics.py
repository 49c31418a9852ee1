"""Every metric the Grafana dashboard queries is exported by the matching simulator, whose
names follow the real stacks byte for byte; and the dashboard is wired to the provisioned
Prometheus datasource."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.procs import REPO_ROOT, start_sim, stop_sim

DASHBOARD = REPO_ROOT / "services/grafana/dashboards/quantbench.json"
DATASOURCES = REPO_ROOT / "services/grafana/provisioning/datasources/prometheus.yml"
PROVIDERS = REPO_ROOT / "services/grafana/provisioning/dashboards/dashboards.yml"
# Stack -> (quant for the simulator, metric-name pattern of that stack).
STACKS = {
    "vllm": ("awq", re.compile(r"\bvllm:[a-z0-9_]+")),
    "tgi": ("awq", re.compile(r"\btgi_[a-z0-9_]+")),
    "exllamav2": ("exl2", re.compile(r"\bexllamav2:[a-z0-9_]+")),
}


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in _panels(dashboard) for t in p.get("targets", []) if "expr" in t]


def queried_names(stack: str) -> set[str]:
    pattern = STACKS[stack][1]
    return {name for expr in _expressions() for name in pattern.findall(expr)}


def _generate_once(base_url: str, stack: str) -> None:
    """One small request, so labelled series and histograms have samples."""
    if stack == "tgi":
        model = "tgi"  # any other name is a LoRA adapter id on TGI
    else:
        model = httpx.get(f"{base_url}/v1/models", timeout=10).json()["data"][0]["id"]
    response = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def exported_names(stack: str) -> set[str]:
    """Sample names (with _bucket/_sum/_count/_total as exposed) of a fresh simulator."""
    quant = STACKS[stack][0]
    proc, url = start_sim(
        "--stack", stack, "--quant", quant, "--port", "0",
        "--timing", "fixed", "--ttft-ms", "1", "--itl-ms", "1",
    )  # fmt: skip
    try:
        _generate_once(url, stack)
        text = httpx.get(f"{url}/metrics", timeout=10).text
    finally:
        stop_sim(proc)
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def test_dashboard_queries_every_stack() -> None:
    for stack in STACKS:
        assert queried_names(stack), f"the dashboard shows nothing of {stack}"


@pytest.mark.slow
@pytest.mark.parametrize("stack", sorted(STACKS))
def test_simulator_exports_what_the_dashboard_queries(stack: str) -> None:
    missing = queried_names(stack) - exported_names(stack)
    assert not missing, f"the {stack} simulator does not export {sorted(missing)}"


def test_dashboard_uses_the_provisioned_datasource() -> None:
    datasource = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_dashboard_is_provisioned_from_its_mount() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    provider = yaml.safe_load(PROVIDERS.read_text())["providers"][0]
    assert mounts["./services/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./services/grafana/provisioning"] == "/etc/grafana/provisioning"
