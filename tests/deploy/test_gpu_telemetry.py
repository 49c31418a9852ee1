"""GPU telemetry in the deployment: dcgm-exporter in every GPU profile (pinned, loopback, GPU
access, a working healthcheck), Prometheus' GPU -> service mapping built from the same .env ids
as each service's device_ids, and Grafana panels that query documented DCGM fields. The live
test runs the real gpu-owners.sh wrapper and Debian's Prometheus against a dcgm-exporter page."""

from __future__ import annotations

import csv
import http.server
import json
import os
import re
import shutil
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.analysis.server.live import free_port, wait_for
from tests.deploy.helpers import run_compose, write_secret_files
from tests.procs import REPO_ROOT

COUNTERS = REPO_ROOT / "services/dcgm-exporter/counters.csv"
OWNERS_SCRIPT = REPO_ROOT / "services/prometheus/gpu-owners.sh"
RULES = REPO_ROOT / "services/prometheus/rules/gpu.yml"
PROM_CONFIG = REPO_ROOT / "services/prometheus/prometheus.yml"
DASHBOARD = REPO_ROOT / "services/grafana/dashboards/quantbench.json"
TELEMETRY_DOC = REPO_ROOT / "docs/telemetry.md"
PAGE = REPO_ROOT / "tests/loadtest/data/dcgm_exporter_page.txt"
DCGM_NAME = re.compile(r"\bDCGM_FI_[A-Z0-9_]+")


def _rendered(env: dict[str, str], env_file: bool = True) -> dict[str, Any]:
    done = run_compose("config", "--format", "json", env=env, profiles=("*",), env_file=env_file)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def secret_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_secret_files(tmp_path_factory.mktemp("secrets"), "unused")


@pytest.fixture(scope="module")
def services(secret_env: dict[str, str]) -> dict[str, dict[str, Any]]:
    return _rendered(secret_env)["services"]


def _gpu_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Services that serve a model on a GPU: a stack label and a GPU reservation."""
    return {
        name: spec
        for name, spec in services.items()
        if "io.quantbench.stack" in (spec.get("labels") or {})
        and "devices" in json.dumps(spec.get("deploy", {}))
    }


def _counter_fields() -> dict[str, str]:
    """DCGM field -> Prometheus type, from the collectors file the exporter is given."""
    with COUNTERS.open() as handle:
        rows = csv.reader(line for line in handle if line.strip() and not line.startswith("#"))
        return {row[0].strip(): row[1].strip() for row in rows}


# ------------------------------------------------------------------ the compose service
def test_dcgm_exporter_runs_in_every_gpu_profile_and_no_other(
    services: dict[str, dict[str, Any]],
) -> None:
    gpu_profiles = {p for spec in _gpu_services(services).values() for p in spec["profiles"]}
    assert gpu_profiles >= {"vllm", "tgi", "exllamav2", "vllm-awq", "tgi-gptq"}
    assert set(services["dcgm-exporter"]["profiles"]) == gpu_profiles
    assert not {"sim", "locust"} & set(services["dcgm-exporter"]["profiles"])


def test_dcgm_exporter_is_pinned_on_loopback_with_every_gpu(
    services: dict[str, dict[str, Any]],
) -> None:
    spec = services["dcgm-exporter"]
    assert re.fullmatch(
        r"nvcr\.io/nvidia/k8s/dcgm-exporter:\d+\.\d+\.\d+-\d+\.\d+\.\d+-ubuntu22\.04", spec["image"]
    ), spec["image"]
    (port,) = spec["ports"]
    assert (port["host_ip"], port["target"], port["published"]) == ("127.0.0.1", 9400, "9400")
    (device,) = spec["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert device["count"] == -1, "count: all (compose renders it as -1): every GPU"
    assert spec["cap_add"] == ["SYS_ADMIN"], "DCGM's profiling fields need it"


def test_dcgm_exporter_collects_the_counters_file_every_second(
    services: dict[str, dict[str, Any]],
) -> None:
    spec = services["dcgm-exporter"]
    flags = dict(arg.split("=", 1) for arg in spec["command"] if "=" in arg)
    mounts = {v["target"]: v for v in spec["volumes"]}
    mount = mounts[flags["--collectors"]]
    assert Path(mount["source"]) == COUNTERS and mount["read_only"]
    assert flags["--collect-interval"] == "1000", "ms; the exporter's own default is 30 s"
    assert flags["--address"] == ":9400" and "--no-hostname" in spec["command"]


def test_the_counters_file_is_in_the_exporters_format() -> None:
    fields = _counter_fields()
    assert set(fields.values()) <= {"gauge", "counter", "label"}
    for line in COUNTERS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert len(next(csv.reader([line]))) == 3, f"3 fields per line: {line!r}"
    assert fields["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == "counter"
    assert fields["DCGM_FI_DEV_POWER_USAGE"] == "gauge"
    assert "DCGM_FI_DEV_CLOCKS_EVENT_REASONS" in fields, "the current name of field 112"


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b"OK" if self.path == "/health" and self.status == 200 else b"unavailable"
        self.send_response(self.status if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> tuple[socketserver.TCPServer, int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def test_the_healthcheck_probe_passes_only_on_a_200(
    services: dict[str, dict[str, Any]],
) -> None:
    check = services["dcgm-exporter"]["healthcheck"]
    kind, shell, flag, script = check["test"]
    assert (kind, shell, flag) == ("CMD", "bash", "-c")
    assert "curl" not in script and "wget" not in script, "the image has neither"
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in check

    def probe(port: int) -> int:
        local = script.replace("$$", "$").replace("/9400", f"/{port}")
        return subprocess.run([shell, flag, local], timeout=10, check=False).returncode

    class Down(_Health):
        status = 503

    for handler, healthy in ((_Health, True), (Down, False)):
        server, port = _serve(handler)
        try:
            assert (probe(port) == 0) == healthy, handler.__name__
        finally:
            server.shutdown()
            server.server_close()
    assert probe(port) != 0, "nothing listening"


# ------------------------------------------------------------------ GPU -> service mapping
def _owners(owners_env: str, tmp_path: Path) -> dict[str, str]:
    """Run gpu-owners.sh as the container does; return service -> device_id it recorded."""
    out = tmp_path / "generated" / "gpu-owners.yml"
    done = subprocess.run(
        ["sh", str(OWNERS_SCRIPT), "true"],
        env={"PATH": os.environ["PATH"], "QB_GPU_OWNERS": owners_env,
             "QB_GPU_OWNERS_FILE": str(out)},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make prometheus`"
    checked = subprocess.run([promtool, "check", "rules", str(out)], capture_output=True,
                             text=True, timeout=60, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = yaml.safe_load(out.read_text())["groups"][0]["rules"]
    assert all(r["record"] == "quantbench:gpu_assignment" for r in rules)
    return {r["labels"]["service"]: r["labels"]["device_id"] for r in rules}


@pytest.mark.parametrize(
    ("extra", "env_file"),
    [({}, True), ({}, False), ({"GPU_ID": "3"}, True),
     ({"VLLM_FP16_GPU": "GPU-5e0c3a8d-9b1f-4c57-a3e2-1f7d2b9c6e01"}, True)],
    ids=["env-example", "defaults", "gpu-id", "uuid"],
)  # fmt: skip
def test_gpu_owners_are_each_services_device_ids(
    extra: dict[str, str], env_file: bool, secret_env: dict[str, str], tmp_path: Path
) -> None:
    config = _rendered({**secret_env, **extra}, env_file=env_file)
    services = config["services"]
    expected = {
        name: str(spec["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"][0])
        for name, spec in _gpu_services(services).items()
    }
    owners = _owners(services["prometheus"]["environment"]["QB_GPU_OWNERS"], tmp_path)
    assert owners == expected
    if "GPU_ID" in extra:
        assert set(owners.values()) == {"3"}


def test_a_malformed_owner_is_skipped_with_a_line(tmp_path: Path) -> None:
    out = tmp_path / "generated" / "gpu-owners.yml"
    done = subprocess.run(
        ["sh", str(OWNERS_SCRIPT), "echo", "exec'd"],
        env={"PATH": os.environ["PATH"], "QB_GPU_OWNERS_FILE": str(out),
             "QB_GPU_OWNERS": 'vllm-awq=0 tgi-awq=0"}\n x: y bare'},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout == "exec'd\n", "the wrapped command runs"
    assert "skipping 'tgi-awq=0\"}'" in done.stderr and "skipping 'bare'" in done.stderr
    rules = yaml.safe_load(out.read_text())["groups"][0]["rules"]
    assert [r["labels"] for r in rules] == [{"service": "vllm-awq", "device_id": "0"}]


def test_prometheus_runs_behind_the_owners_wrapper(services: dict[str, dict[str, Any]]) -> None:
    spec = services["prometheus"]
    assert spec["entrypoint"] == ["/bin/sh", "/etc/prometheus/gpu-owners.sh", "/bin/prometheus"]
    mounts = {v["target"]: Path(v["source"]) for v in spec["volumes"] if v["type"] == "bind"}
    assert mounts["/etc/prometheus/gpu-owners.sh"] == OWNERS_SCRIPT
    assert mounts["/etc/prometheus/rules"] == RULES.parent
    assert mounts["/etc/prometheus/prometheus.yml"] == PROM_CONFIG
    written = Path(spec["environment"]["QB_GPU_OWNERS_FILE"])
    patterns = yaml.safe_load(PROM_CONFIG.read_text())["rule_files"]
    relative = written.relative_to("/etc/prometheus")  # rule_files are relative to the config
    assert any(relative.match(pattern) for pattern in patterns), (relative, patterns)
    assert any(Path("rules/gpu.yml").match(pattern) for pattern in patterns)


# ------------------------------------------------------------------ Grafana
def _gpu_panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [p for p in dashboard["panels"] if any(
        DCGM_NAME.search(t.get("expr", "")) for t in p.get("targets", []))]  # fmt: skip


def test_gpu_panels_query_collected_and_documented_fields() -> None:
    panels = _gpu_panels()
    titles = {p["title"] for p in panels}
    assert {"GPU power draw", "Energy per output token", "SM activity and GPU utilisation",
            "GPU memory used", "Memory bandwidth utilisation",
            "Temperature and throttling"} <= titles  # fmt: skip
    queried = {name for p in panels for t in p["targets"] for name in DCGM_NAME.findall(t["expr"])}
    collected = set(_counter_fields())
    assert queried <= collected, f"not collected by the exporter: {sorted(queried - collected)}"
    documented = set(DCGM_NAME.findall(TELEMETRY_DOC.read_text()))
    assert collected <= documented, f"undocumented in docs/telemetry.md: {collected - documented}"
    for panel in panels:
        for target in panel["targets"]:
            expr = target["expr"]
            assert 'quantbench:gpu_owner{service=~"$service"}' in expr, (panel["title"], expr)


# ------------------------------------------------------------------ live: Prometheus + wrapper
class _Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGE.read_bytes() if self.path == "/dcgm" else b"# TYPE ok gauge\nok 1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def live_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus is missing: `make prometheus`"
    root = tmp_path_factory.mktemp("gpu-prometheus")
    server, port = _serve(_Pages)
    real = yaml.safe_load(PROM_CONFIG.read_text())
    (dcgm_job,) = [job for job in real["scrape_configs"] if job["job_name"] == "dcgm"]
    dcgm_job = {**dcgm_job, "metrics_path": "/dcgm",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}  # fmt: skip
    shutil.copytree(RULES.parent, root / "rules")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": real["rule_files"],
        "scrape_configs": [
            {"job_name": "vllm", "static_configs": [
                {"targets": [f"127.0.0.1:{port}"], "labels": {"service": "vllm-awq"}},
                {"targets": [f"localhost:{port}"], "labels": {"service": "vllm-gptq"}}]},
            {"job_name": "tgi", "static_configs": [  # given GPU 0 too, but down
                {"targets": ["127.0.0.1:1"], "labels": {"service": "tgi-awq"}}]},
            dcgm_job,
        ],
    }  # fmt: skip
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    web = free_port()
    owners = "vllm-awq=0 vllm-gptq=GPU-a7d41f02-3c6e-48b9-9e5a-0b8f1c2d3e45 tgi-awq=0"
    log = (root / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        ["sh", str(OWNERS_SCRIPT), prometheus, f"--config.file={root / 'prometheus.yml'}",
         f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
        env={"PATH": os.environ["PATH"], "QB_GPU_OWNERS": owners,
             "QB_GPU_OWNERS_FILE": str(root / "generated" / "gpu-owners.yml")},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{web}"
    try:
        wait_for(lambda: _ready(base, proc, root), "Prometheus ready", deadline_s=60)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        server.shutdown()
        server.server_close()


def _ready(base: str, proc: subprocess.Popen[bytes], root: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"Prometheus exited: {(root / 'prometheus.log').read_text()[-2000:]}")
    try:
        return httpx.get(f"{base}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    response.raise_for_status()  # 503 "Service Unavailable" until Prometheus is ready
    body = response.json()
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


def _poll(base: str, expr: str, count: int, deadline_s: float = 60.0) -> list[dict[str, Any]]:
    end = time.monotonic() + deadline_s
    while True:
        try:
            result = _query(base, expr)
            if len(result) >= count:
                return result
        except httpx.HTTPError:
            pass
        assert time.monotonic() < end, f"no {count} series of {expr} within {deadline_s} s"
        time.sleep(0.2)


@pytest.mark.slow
def test_each_gpu_belongs_to_the_running_service_it_was_given(live_prometheus: str) -> None:
    owners = _poll(live_prometheus, "quantbench:gpu_owner", 2)
    found = {(s["metric"]["service"], s["metric"]["gpu"], s["metric"]["UUID"]) for s in owners}
    assert found == {
        ("vllm-awq", "0", "GPU-5e0c3a8d-9b1f-4c57-a3e2-1f7d2b9c6e01"),  # by index
        ("vllm-gptq", "1", "GPU-a7d41f02-3c6e-48b9-9e5a-0b8f1c2d3e45"),  # by UUID
    }, "tgi-awq was given GPU 0 too but is down; GPU 2 is only a MIG instance here"


@pytest.mark.slow
def test_every_gpu_panel_query_runs_and_names_the_service(live_prometheus: str) -> None:
    _poll(live_prometheus, "quantbench:gpu_owner", 2)
    for panel in _gpu_panels():
        for target in panel["targets"]:
            expr = target["expr"].replace("$service", ".+").replace("$__rate_interval", "10s")
            result = _query(live_prometheus, expr)
            if "rate(" in expr:
                continue  # a counter rate needs two samples of a moving counter: syntax only
            services = {s["metric"].get("service") for s in result}
            assert services == {"vllm-awq", "vllm-gptq"}, (panel["title"], expr, result)
            assert all(len(s["metric"]) == 4 for s in result), "service, device_id, gpu, UUID"
    (power,) = _query(
        live_prometheus,
        'quantbench:gpu_owner{service="vllm-awq"} * on (gpu, UUID) group_left () '
        "DCGM_FI_DEV_POWER_USAGE",
    )
    assert float(power["value"][1]) == pytest.approx(612.345)
    no_hostname = _query(live_prometheus, 'DCGM_FI_DEV_POWER_USAGE{DCGM_FI_DRIVER_VERSION!=""}')
    assert no_hostname == [], "the driver version label is dropped at scrape"
