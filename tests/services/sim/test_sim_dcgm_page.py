"""Every simulator serves its simulated GPU as dcgm-exporter does (`/dcgm/metrics`): the names,
types, help and labels of the deployment's counters file, parsed by prometheus_client and by
the GPU sample reader, labelled simulated; and Debian's Prometheus, with the compose file's own
dcgm job, scrapes a running simulator's page with no error."""

from __future__ import annotations

import asyncio
import csv
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from loadtest.gpu_records import samples_from_dcgm
from services.sim import SimSettings, build_app
from services.sim.dcgm_page import DCGM_PATH, FIELDS
from services.sim.gpu_specs import GPU_SPECS
from tests.analysis.server.live import free_port, wait_for
from tests.procs import REPO_ROOT, start_sim, stop_sim

COUNTERS = REPO_ROOT / "services/dcgm-exporter/counters.csv"
PROM_CONFIG = REPO_ROOT / "services/prometheus/prometheus.yml"
RULES = REPO_ROOT / "services/prometheus/rules"
# gpuMetricsFormat: gpu, UUID, pci_bus_id, device, modelName, then label fields, attributes
LABEL_ORDER = ["gpu", "UUID", "pci_bus_id", "device", "modelName", "DCGM_FI_DRIVER_VERSION",
               "simulated"]  # fmt: skip


def _counters() -> dict[str, tuple[str, str]]:
    with COUNTERS.open() as handle:
        rows = csv.reader(line for line in handle if line.strip() and not line.startswith("#"))
        return {row[0].strip(): (row[1].strip(), row[2].strip()) for row in rows}


def _page(stack: str, quant: str, requests: int = 0) -> str:
    settings = SimSettings.model_validate(
        {"stack": stack, "quant": quant, "gpu": "a100", "speed": 20.0}
    )

    async def main() -> str:
        async with TestClient(TestServer(build_app(settings))) as client:
            path = "/generate" if stack == "tgi" else "/v1/completions"
            for i in range(requests):
                body: dict[str, Any] = (
                    {"inputs": f"hello {i}", "parameters": {"max_new_tokens": 8}}
                    if stack == "tgi"
                    else {"prompt": f"hello {i}", "max_tokens": 8}
                )
                assert (await client.post(path, json=body)).status == 200
            response = await client.get(DCGM_PATH)
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return await response.text()

    return asyncio.run(main())


STACKS = [("vllm", "awq"), ("tgi", "gptq"), ("exllamav2", "exl2")]


@pytest.mark.parametrize(("stack", "quant"), STACKS)
def test_the_page_has_the_exporters_names_types_help_and_labels(stack: str, quant: str) -> None:
    text = _page(stack, quant)
    counters = _counters()
    families = list(text_string_to_metric_families(text))
    assert families, text
    for family in families:
        kind, help_text = counters[family.name]  # KeyError: a name the exporter would not use
        assert (family.type, family.documentation) == (kind, help_text), family.name
        (sample,) = family.samples
        assert list(sample.labels) == LABEL_ORDER
        assert sample.labels["simulated"] == "true" and sample.labels["gpu"] == "0"
    names = {family.name for family in families}
    assert names == {field[0] for field in FIELDS}
    # the exposition itself names a counter's sample as its field, without `_total`
    written = {line.split("{")[0] for line in text.splitlines() if not line.startswith("#")}
    assert written == names
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in names and "DCGM_FI_DEV_FB_USED" in names
    # integers print as %d, doubles as %f (gpu_collector.go, toString)
    assert re.search(r"^DCGM_FI_DEV_GPU_UTIL\{.*\} \d+$", text, re.M)
    assert re.search(r"^DCGM_FI_DEV_POWER_USAGE\{.*\} \d+\.\d{6}$", text, re.M)


def test_the_sample_reader_reads_a_simulated_card_that_worked() -> None:
    before = samples_from_dcgm(_page("vllm", "awq"), 1.0)
    (idle,) = before
    assert idle.simulated and idle.source == "dcgm" and idle.name == "NVIDIA A100-SXM4-80GB"
    assert idle.power_w == pytest.approx(GPU_SPECS["a100"].idle_w)
    assert idle.throttled is False and idle.memory_total_mib == GPU_SPECS["a100"].memory_total_mib
    (worked,) = samples_from_dcgm(_page("vllm", "awq", requests=6), 2.0)
    assert worked.uuid == idle.uuid, "the same card for the same stack, quant and GPU"
    assert worked.energy_mj is not None and idle.energy_mj is not None
    assert worked.energy_mj > idle.energy_mj
    assert worked.gpu_util_pct is not None and worked.gpu_util_pct > 0


# ------------------------------------------------------------------ a real Prometheus
@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    proc, url = start_sim("--stack", "vllm", "--quant", "awq", "--port", "0", "--speed", "10")
    yield url
    stop_sim(proc)


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    response.raise_for_status()
    return list(response.json()["data"]["result"])


@pytest.mark.slow
def test_debians_prometheus_scrapes_a_simulators_page_and_gives_it_to_its_service(
    sim_url: str, tmp_path: Path
) -> None:
    """The compose file's own `sim-dcgm` job and GPU rules: the page scrapes with no error,
    and the Grafana GPU panels' join puts the simulated GPU on its simulator's service."""
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus is missing: `make prometheus`"
    real = yaml.safe_load(PROM_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in real["scrape_configs"]}
    hostport = sim_url.removeprefix("http://")
    labels = {"service": "sim-vllm-awq", "simulated": "true"}
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": real["rule_files"],
        "scrape_configs": [
            {"job_name": "sim", "static_configs": [{"targets": [hostport], "labels": labels}]},
            {**jobs["sim-dcgm"], "static_configs": [{"targets": [hostport], "labels": labels}]},
        ],
    }
    shutil.copytree(RULES, tmp_path / "rules")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    web = free_port()
    base = f"http://127.0.0.1:{web}"
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for i in range(4):  # some work, so the card is not idle
            httpx.post(f"{sim_url}/v1/completions", json={"prompt": f"x {i}", "max_tokens": 16})

        def owned() -> bool:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                return bool(_query(base, 'quantbench:gpu_owner{service="sim-vllm-awq"}'))
            except httpx.HTTPError:
                return False

        wait_for(owned, "the simulated GPU scraped and given to its service", deadline_s=90)
        targets = httpx.get(f"{base}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        (page,) = [t for t in targets if t["labels"]["job"] == "sim-dcgm"]
        assert page["health"] == "up" and page["lastError"] == "", page
        assert page["scrapeUrl"].endswith(DCGM_PATH)
        (count,) = _query(base, 'scrape_samples_post_metric_relabeling{job="sim-dcgm"}')
        assert int(float(count["value"][1])) == len(FIELDS)
        (power,) = _query(base, "DCGM_FI_DEV_POWER_USAGE")
        assert power["metric"]["simulated"] == "true" and power["metric"]["gpu"] == "0"
        assert "DCGM_FI_DRIVER_VERSION" not in power["metric"], "dropped at scrape"
        panel = (
            'quantbench:gpu_owner{service="sim-vllm-awq"} * on (gpu, UUID) group_left () '
            "DCGM_FI_DEV_POWER_USAGE"
        )
        (joined,) = _query(base, panel)
        assert joined["metric"]["service"] == "sim-vllm-awq"
        assert GPU_SPECS["h100"].idle_w <= float(joined["value"][1]) <= GPU_SPECS["h100"].tdp_w
        (limit,) = _query(base, f"DCGM_FI_DEV_POWER_MGMT_LIMIT @ {time.time():.3f}")
        assert float(limit["value"][1]) == GPU_SPECS["h100"].tdp_w
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
