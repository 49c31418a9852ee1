"""docker-compose.yml, validated by the real Compose v2 binary (no engine needed): every profile
renders, GPU services reserve a GPU and wait for their model, nothing listens beyond 127.0.0.1,
and no secret value reaches the file or the rendered config."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest.config import LoadConfig
from services.exllamav2.config import Exl2Config
from tests.deploy.helpers import COMPOSE_FILE, ENV_EXAMPLE, run_compose, write_secret_files
from tests.procs import REPO_ROOT

PROFILES = ("vllm", "tgi", "exllamav2", "sim", "locust")
GPU_SERVICES = {
    "vllm-awq": "vllm",
    "vllm-gptq": "vllm",
    "vllm-fp16": "vllm",
    "tgi-awq": "tgi",
    "tgi-gptq": "tgi",
    "exllamav2": "exllamav2",
}
SIM_SERVICES = {"sim-vllm-awq", "sim-vllm-gptq", "sim-vllm-fp16", "sim-tgi-awq", "sim-exllamav2"}
ALWAYS_ON = {"prometheus", "grafana"}
MARKER = "qb-dummy-secret-7f3a9c"


@pytest.fixture(scope="module")
def secret_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_secret_files(tmp_path_factory.mktemp("secrets"), MARKER)


@pytest.fixture(scope="module")
def rendered(secret_env: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """`config --format json` with every profile active, as text and parsed."""
    done = run_compose("config", "--format", "json", env=secret_env, profiles=("*",))
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(done.stdout)


@pytest.fixture(scope="module")
def services(rendered: tuple[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return rendered[1]["services"]


def _seconds(duration: str) -> float:
    """A Go duration as compose renders it (`20m0s`, `1h0m0s`, `30s`)."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts, f"not a duration: {duration!r}"
    return sum(float(value) * units[unit] for value, unit in parts)


@pytest.mark.parametrize("env_file", [True, False], ids=["env-example", "defaults"])
@pytest.mark.parametrize("profile", [None, *PROFILES, "*"])
def test_every_profile_validates(
    profile: str | None, env_file: bool, secret_env: dict[str, str]
) -> None:
    profiles = (profile,) if profile else ()
    done = run_compose("config", "-q", env=secret_env, profiles=profiles, env_file=env_file)
    assert done.returncode == 0, f"--profile {profile}: {done.stderr}"


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_brings_its_services_and_monitoring(
    profile: str, secret_env: dict[str, str], services: dict[str, dict[str, Any]]
) -> None:
    done = run_compose("config", "--services", env=secret_env, profiles=(profile,))
    assert done.returncode == 0, done.stderr
    active = set(done.stdout.split())
    expected = {name for name, spec in services.items() if profile in spec.get("profiles", [])}
    assert expected, f"profile {profile} has no service"
    assert active == expected | ALWAYS_ON, f"--profile {profile} starts {sorted(active)}"


def test_without_a_profile_only_monitoring_starts(secret_env: dict[str, str]) -> None:
    done = run_compose("config", "--services", env=secret_env)
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == ALWAYS_ON


def test_all_expected_services_exist(services: dict[str, dict[str, Any]]) -> None:
    expected = set(GPU_SERVICES) | SIM_SERVICES | ALWAYS_ON | {"locust-master", "locust-worker"}
    assert expected <= set(services), f"missing: {sorted(expected - set(services))}"


# The GPU each service reserves when a whole profile starts at once (GPU_ID unset).
PROFILE_GPUS = {
    "vllm-awq": "0",
    "vllm-gptq": "1",
    "vllm-fp16": "2",
    "tgi-awq": "0",
    "tgi-gptq": "1",
    "exllamav2": "0",
}


def _device_ids(spec: dict[str, Any]) -> list[str]:
    devices = spec["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1, devices
    device = devices[0]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert "count" not in device, "count and device_ids are mutually exclusive"
    return [str(i) for i in device["device_ids"]]


@pytest.mark.parametrize("env_file", [True, False], ids=["env-example", "defaults"])
def test_each_profile_puts_its_services_on_distinct_gpus(
    env_file: bool, secret_env: dict[str, str]
) -> None:
    done = run_compose("config", "--format", "json", env=secret_env, profiles=("*",),
                       env_file=env_file)  # fmt: skip
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert {name: _device_ids(services[name])[0] for name in GPU_SERVICES} == PROFILE_GPUS
    for profile in ("vllm", "tgi", "exllamav2"):
        members = [name for name, stack in GPU_SERVICES.items() if stack == profile]
        gpus = [PROFILE_GPUS[name] for name in members]
        assert len(set(gpus)) == len(gpus), f"--profile {profile} shares a GPU: {gpus}"


def test_gpu_id_pins_every_service_to_one_gpu(secret_env: dict[str, str]) -> None:
    for gpu_id, solo in (({"GPU_ID": "3"}, "3"), ({}, "0")):
        done = run_compose("config", "--format", "json", env={**secret_env, **gpu_id},
                           profiles=("*",))  # fmt: skip
        assert done.returncode == 0, done.stderr
        config = json.loads(done.stdout)
        assert config["x-quantbench"]["solo-gpu"] == solo, "quantbench reads the solo GPU here"
        if gpu_id:
            assert {_device_ids(config["services"][name])[0] for name in GPU_SERVICES} == {"3"}


@pytest.mark.parametrize("name", sorted(set(GPU_SERVICES) | SIM_SERVICES))
def test_model_services_are_healthy_only_once_loaded(
    name: str, services: dict[str, dict[str, Any]]
) -> None:
    check = services[name].get("healthcheck")
    assert check, f"{name} has no healthcheck: `up --wait` would not wait for the model"
    probe = " ".join(check["test"])
    assert "/health" in probe and "python3" in probe and "curl" not in probe, probe
    port = 80 if name.startswith("tgi-") else 8000
    assert f"127.0.0.1:{port}/health" in probe, f"{name} probes the wrong port: {probe}"
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in check, f"{name} healthcheck lacks {key}"
    if name in GPU_SERVICES:
        assert _seconds(check["start_period"]) >= 600, "a download needs a long start_period"


def test_sim_services_need_no_gpu(services: dict[str, dict[str, Any]]) -> None:
    for name in SIM_SERVICES:
        spec = services[name]
        assert "devices" not in json.dumps(spec.get("deploy", {})), f"{name} reserves a GPU"
        assert spec["build"]["dockerfile"] == "services/sim/Dockerfile"
        assert spec["profiles"] == ["sim"]
        command = spec["command"]
        assert command[:3] == ["python", "-m", "services.sim"], command
        assert command[command.index("--host") + 1] == "0.0.0.0"


def test_every_published_port_is_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, spec in services.items():
        for port in spec.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_stack_and_sim_services_sit_behind_profiles(services: dict[str, dict[str, Any]]) -> None:
    for name, spec in services.items():
        if name in ALWAYS_ON:
            continue
        assert spec.get("profiles"), f"{name} has no profile: it would start on every `up`"
    for name, stack in GPU_SERVICES.items():
        assert services[name]["profiles"][0] == stack, "the first profile names the stack"
    assert services["exllamav2-fetch"]["profiles"] == ["exllamav2"]


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, spec in services.items():
        if "build" in spec:
            continue
        image = spec["image"]
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        assert tag and tag != "latest", f"{name} uses an unpinned image {image}"
    assert services["vllm-awq"]["image"] == "vllm/vllm-openai:v0.33.0", "the CUDA 13 build"
    assert services["tgi-awq"]["image"] == "ghcr.io/huggingface/text-generation-inference:3.3.5"
    locust = services["locust-master"]["build"]["dockerfile_inline"]
    assert re.search(r"^FROM locustio/locust:\d+\.\d+\.\d+$", locust, re.M), locust


@pytest.mark.parametrize("name", ["vllm-awq", "vllm-gptq", "vllm-fp16"])
def test_vllm_flags(name: str, services: dict[str, dict[str, Any]]) -> None:
    spec = services[name]
    command = spec["command"]
    flags = {arg.split("=", 1)[0] for arg in command if arg.startswith("--")}
    assert {"--served-model-name", "--max-model-len", "--gpu-memory-utilization"} <= flags
    quantization = [arg for arg in command if arg.startswith(("--quantization", "-q"))]
    assert all("marlin" in arg for arg in quantization), (
        f"{name}: an explicit awq/gptq forces the slow kernels (STACKS.md 1.6): {quantization}"
    )
    assert spec.get("ipc") == "host" or spec.get("shm_size"), "vLLM needs ipc: host or shm"
    assert spec["entrypoint"][-1] == "vllm-serve" and "exec vllm serve" in spec["entrypoint"][2]
    targets = {volume["target"]: volume["source"] for volume in spec["volumes"]}
    assert targets.get("/root/.cache/huggingface") == "hf-cache"


@pytest.mark.parametrize("name", ["tgi-awq", "tgi-gptq"])
def test_tgi_flags(name: str, services: dict[str, dict[str, Any]]) -> None:
    spec = services[name]
    assert any(arg.startswith("--model-id=") for arg in spec["command"])
    assert "--port=80" in spec["command"]
    assert int(spec["shm_size"]) >= 2**30, "TGI needs 1g of shm for NCCL"
    targets = {volume["target"]: volume["source"] for volume in spec["volumes"]}
    assert targets.get("/data") == "hf-cache", "TGI shares the model cache volume"


def test_exllamav2_runs_our_server_on_the_fetched_model(
    services: dict[str, dict[str, Any]],
) -> None:
    spec = services["exllamav2"]
    assert spec["build"]["dockerfile"] == "services/exllamav2/Dockerfile"
    assert "exec python -m services.exllamav2" in spec["entrypoint"][2]
    command = spec["command"]
    assert "--host=0.0.0.0" in command and "--port=8000" in command
    model_dir = next(arg for arg in command if arg.startswith("--model-dir="))
    fetch = services["exllamav2-fetch"]
    assert model_dir == f"--model-dir=/models/{fetch['environment']['EXL2_MODEL_DIR']}"
    assert spec["depends_on"]["exllamav2-fetch"]["condition"] == "service_completed_successfully"


def test_locust_workers_scale(services: dict[str, dict[str, Any]]) -> None:
    worker = services["locust-worker"]
    assert not worker.get("ports"), "a published port would stop `--scale locust-worker=N`"
    assert not worker.get("container_name")
    assert "--master-host=locust-master" in worker["command"]
    assert "--master" in services["locust-master"]["command"]


def test_secrets_are_files_never_values(
    rendered: tuple[str, dict[str, Any]], secret_env: dict[str, str]
) -> None:
    text, config = rendered
    assert MARKER not in text, "a secret value leaked into the rendered config"
    for path in (COMPOSE_FILE, ENV_EXAMPLE):
        assert MARKER not in path.read_text()
    declared = config["secrets"]
    assert set(declared) == {"hf_token", "api_key", "grafana_admin_password"}
    for name, secret in declared.items():
        assert set(secret) <= {"name", "file"}, f"secret {name} must come from a file"
        assert secret["file"] == secret_env[f"{name.upper()}_FILE"]
    services = config["services"]
    for name in GPU_SERVICES:
        if name != "exllamav2":
            assert {s["source"] for s in services[name]["secrets"]} == {"hf_token", "api_key"}
        env = services[name].get("environment", {})
        assert not {"HF_TOKEN", "VLLM_API_KEY", "API_KEY"} & set(env), f"{name} sets a key in env"


def test_grafana_is_locked_down(services: dict[str, dict[str, Any]]) -> None:
    spec = services["grafana"]
    env = spec["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert [s["source"] for s in spec["secrets"]] == ["grafana_admin_password"]


def test_bind_mounts_and_dockerfiles_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, spec in services.items():
        for volume in spec.get("volumes", []):
            if volume["type"] == "bind" and volume["target"] != "/runs":
                assert Path(volume["source"]).exists(), f"{name} mounts missing {volume['source']}"
    assert (REPO_ROOT / "services/sim/Dockerfile").is_file()


def test_exllamav2_dockerfile_exists() -> None:
    dockerfile = REPO_ROOT / "services/exllamav2/Dockerfile"
    if not dockerfile.is_file():
        pytest.skip("services/exllamav2/Dockerfile is not written yet (the ExLlamaV2 server issue)")
    assert dockerfile.read_text().strip(), "services/exllamav2/Dockerfile is empty"


PRINTER = """\
import json, os, sys
keys = ("HF_TOKEN", "VLLM_API_KEY", "API_KEY", "EXLLAMAV2_API_KEY")
env = {k: os.environ[k] for k in keys if k in os.environ}
print(json.dumps({"argv": sys.argv[1:], "env": env}))
"""


def _run_entrypoint(
    spec: dict[str, Any], secrets: Path, tmp_path: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """The service's `sh -c` wrapper with its command, run here: /run/secrets points at
    `secrets` and every `exec` runs a printer of its argv and the key variables instead."""
    printer = tmp_path / "printer.py"
    printer.write_text(PRINTER)
    shell, flag, script, name = spec["entrypoint"]
    assert (shell, flag) == ("/bin/sh", "-c")
    script = script.replace("$$", "$").replace("/run/secrets/", f"{secrets}/")
    script = script.replace("exec ", f"exec {sys.executable} {printer} ")
    clean = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "API_KEY")}
    clean.pop("EXL2_CACHE_SIZE", None)
    clean.update(env or {})
    done = subprocess.run(
        ["/bin/sh", "-c", script, name, *spec["command"]],
        capture_output=True,
        text=True,
        env=clean,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    ("name", "program", "key_var"),
    [
        ("vllm-awq", ["vllm", "serve"], "VLLM_API_KEY"),
        ("tgi-awq", ["text-generation-launcher"], "API_KEY"),
        ("exllamav2", ["python", "-m", "services.exllamav2"], "EXLLAMAV2_API_KEY"),
    ],
)
def test_entrypoint_wrappers_pass_secrets_as_variables(
    name: str, program: list[str], key_var: str, services: dict[str, Any], tmp_path: Path
) -> None:
    spec = services[name]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "hf_token").write_text("hf_abc\n")
    (secrets / "api_key").write_text("sk-xyz")
    with_keys = _run_entrypoint(spec, secrets, tmp_path)
    assert with_keys["argv"][: len(program)] == program
    assert with_keys["argv"][len(program) :][: len(spec["command"])] == spec["command"]
    assert with_keys["env"][key_var] == "sk-xyz"
    if "hf_token" in {s["source"] for s in spec["secrets"]}:
        assert with_keys["env"]["HF_TOKEN"] == "hf_abc"
    if name == "exllamav2":
        assert with_keys["argv"][-1] == "--api-key-env=EXLLAMAV2_API_KEY"
    for secret in ("hf_token", "api_key"):
        (secrets / secret).write_text("")
    without = _run_entrypoint(spec, secrets, tmp_path)
    assert without["env"] == {}, "an empty secret file must mean no token and no key"
    assert without["argv"] == [*program, *spec["command"]]


def test_env_example_spells_out_the_defaults(secret_env: dict[str, str]) -> None:
    """Copying .env.example changes nothing: every value in it is the compose file's default."""
    rendered = []
    for env_file in (True, False):
        done = run_compose("config", "--format", "json", env=secret_env, profiles=("*",),
                           env_file=env_file)  # fmt: skip
        assert done.returncode == 0, done.stderr
        rendered.append(json.loads(done.stdout))
    assert rendered[0] == rendered[1]


def _flags(spec: dict[str, Any]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in spec["command"] if arg.startswith("--") and "=" in arg)


def test_engine_limits_are_equal_across_stacks(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    vllm, tgi = _flags(services["vllm-awq"]), _flags(services["tgi-awq"])
    exl2 = _flags(services["exllamav2"])
    context = int(vllm["--max-model-len"])
    assert int(tgi["--max-total-tokens"]) == int(exl2["--max-seq-len"]) == context
    assert int(tgi["--max-input-tokens"]) == context - 1, "prompts up to context - 1 everywhere"
    batch = int(vllm["--max-num-seqs"])
    assert int(tgi["--max-batch-size"]) == int(exl2["--max-batch-size"]) == batch
    assert int(tgi["--max-concurrent-requests"]) >= LoadConfig().max_in_flight, (
        "TGI would refuse load that vLLM and ExLlamaV2 queue"
    )
    # The ExLlamaV2 server accepts these limits (its batch is capped by the prefill chunk).
    Exl2Config(model_dir=tmp_path, max_seq_len=context, max_batch_size=batch)
    for name in ("vllm-gptq", "vllm-fp16", "tgi-gptq"):
        same = _flags(services[name])
        reference = vllm if name.startswith("vllm") else tgi
        for flag in reference:
            if flag.startswith("--max"):
                assert same[flag] == reference[flag], f"{name} {flag}"


def test_exllamav2_cache_size_is_optional(services: dict[str, Any], tmp_path: Path) -> None:
    spec = services["exllamav2"]
    assert spec["environment"]["EXL2_CACHE_SIZE"] == "", "empty: sized from free VRAM"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("hf_token", "api_key"):
        (secrets / name).write_text("")
    auto = _run_entrypoint(spec, secrets, tmp_path)
    assert not any(arg.startswith("--cache-size") for arg in auto["argv"])
    fixed = _run_entrypoint(spec, secrets, tmp_path, {"EXL2_CACHE_SIZE": "65536"})
    assert fixed["argv"][-1] == "--cache-size=65536"


def test_locust_workers_serve_their_exporter_to_prometheus(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["locust-worker"]
    assert "--qb-exporter-port=9646" in worker["command"]
    host, _, port = worker["environment"]["QUANTBENCH_EXPORTER_BIND"].rpartition(":")
    assert (host, port) == ("0.0.0.0", "9646"), "the container's interface, one port per replica"
    assert not worker.get("ports"), "the exporter stays on the compose network"
    prometheus = yaml.safe_load((REPO_ROOT / "services/prometheus/prometheus.yml").read_text())
    (job,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "locust"]
    (dns,) = job["dns_sd_configs"]
    assert dns["names"] == ["locust-worker"] and dns["port"] == 9646
    assert not job.get("static_configs"), "the master runs no users and serves no exporter"
