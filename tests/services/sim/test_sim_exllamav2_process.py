"""A real `python -m services.sim --stack exllamav2` process: the official `openai` client,
health, version and metrics over HTTP."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.services.openai_conformance import check_chat, check_completions

MODEL = "sim/llama-3.1-8b-instruct-exl2"


def _generated_tokens(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    family = fams["exllamav2:generation_tokens"]
    assert family.type == "counter"
    [value] = [s.value for s in family.samples if s.name == "exllamav2:generation_tokens_total"]
    return float(value)


def test_openai_client_conformance(exl2_sim_url: str) -> None:
    check_completions(exl2_sim_url, MODEL, prompt_tokens=4)
    check_chat(exl2_sim_url, MODEL, prompt_tokens=9)


def test_health_version_and_counters_that_increase(exl2_sim_url: str) -> None:
    health = httpx.get(f"{exl2_sim_url}/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert httpx.get(f"{exl2_sim_url}/version").json()["engine"] == "simulated"
    before = _generated_tokens(exl2_sim_url)
    body = {"prompt": "x", "max_tokens": 7}
    assert httpx.post(f"{exl2_sim_url}/v1/completions", json=body).status_code == 200
    assert _generated_tokens(exl2_sim_url) == before + 7
