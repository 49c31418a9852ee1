"""services/prometheus/prometheus.yml: valid for `promtool` (with its rule files), and every scrape
target is a service of docker-compose.yml on the port its stack serves metrics on."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import run_compose, write_secret_files
from tests.procs import REPO_ROOT

CONFIG = REPO_ROOT / "services/prometheus/prometheus.yml"
METRICS_PORT = {
    "vllm": 8000,
    "tgi": 80,
    "exllamav2": 8000,
    "sim": 8000,
    "sim-dcgm": 8000,
    "locust": 9646,
    "dcgm": 9400,
}


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def test_promtool_accepts_the_config() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make prometheus` installs Debian's prometheus"
    done = subprocess.run(
        [promtool, "check", "config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_scrapes_every_5_seconds(prometheus_config: dict[str, Any]) -> None:
    assert prometheus_config["global"]["scrape_interval"] == "5s"
    for job in prometheus_config["scrape_configs"]:
        assert "scrape_interval" not in job, f"job {job['job_name']} overrides the interval"


def test_targets_are_compose_services_on_their_metrics_port(
    prometheus_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = write_secret_files(tmp_path_factory.mktemp("secrets"), "unused")
    done = run_compose("config", "--format", "json", env=env, profiles=("*",))
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    scraped: set[str] = set()
    for job in prometheus_config["scrape_configs"]:
        name = job["job_name"]
        if name == "prometheus":
            continue
        for group in job.get("static_configs", []):
            for target in group["targets"]:
                host, _, port = target.rpartition(":")
                assert host in services, f"job {name} scrapes {host}, not a compose service"
                assert int(port) == METRICS_PORT[name], f"job {name}: {target}"
                scraped.add(host)
                if name == "dcgm":  # its series belong to the service on each GPU, not to it
                    assert "service" not in group["labels"] and group["labels"]["exporter"] == host
                elif name != "locust":
                    assert group["labels"]["service"] == host
        for dns in job.get("dns_sd_configs", []):
            for host in dns["names"]:
                assert host in services and dns["port"] == METRICS_PORT[name]
                scraped.add(host)
    stacks = {
        name for name, spec in services.items() if "io.quantbench.stack" in spec.get("labels", {})
    }
    assert stacks <= scraped, f"not scraped: {sorted(stacks - scraped)}"
    assert "locust-worker" in scraped
    assert "dcgm-exporter" in scraped
