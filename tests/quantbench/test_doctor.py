"""`quantbench doctor` on scripted hosts (a fake `docker` and `nvidia-smi`, the real compose
file rendered by the real Compose binary), and the real CLI on this machine, which has neither
a Docker engine nor a GPU."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from quantbench.cli import build_parser, main
from quantbench.config import load_config
from quantbench.doctor import Check, Host, diagnose, run_doctor
from quantbench.doctor_checks import check_compose, check_docker, check_toolkit
from quantbench.doctor_targets import Context
from quantbench.hostfacts import DockerFacts
from tests.deploy.helpers import write_secret_files
from tests.procs import REPO_ROOT, start_sim, stop_sim
from tests.quantbench.doctor_fakes import A100, RTX4090, good_host, gpu, install_fakes

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
GIB = 1024**3
HOOK = "/usr/bin/nvidia-container-runtime-hook"


class FakeProber:
    """Stands in for a running server: generates unless told why not."""

    def __init__(self, problem: str = "") -> None:
        self.problem = problem
        self._context = Context(4096, 4095)
        self.asked: list[str] = []

    def generating(self, target: Any, url: str, endpoint: str, timeout_s: float) -> str:
        self.asked.append(url)
        return self.problem

    def context(self, url: str, api: str, api_key_env: str | None) -> Context | None:
        return self._context


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    for name in ("GPU_ID", "VLLM_IMAGE", "VLLM_GPTQ_GPU", "VLLM_AWQ_PORT", "COMPOSE_PROFILES"):
        monkeypatch.delenv(name, raising=False)
    for name, path in write_secret_files(tmp_path / "secrets", "qb-doctor-secret").items():
        Path(path).chmod(0o644)
        monkeypatch.setenv(name, path)
    return install_fakes(tmp_path / "bin")


def make_host(
    fakes: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    host: dict[str, Any],
    **overrides: Any,
) -> Host:
    monkeypatch.setenv("FAKE_HOST", json.dumps(host))
    settings: dict[str, Any] = {
        "docker": fakes[0],
        "nvidia_smi": fakes[1],
        "which": lambda name, path=None: HOOK,
        "port_free": lambda host, port: True,
        "disk_free": lambda path: 500 * GIB,
        "prober": FakeProber(),
        "probe_timeout_s": 5.0,
    }
    return Host(**{**settings, **overrides})


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def failed(checks: list[Check]) -> list[Check]:
    return [check for check in checks if check.status == "fail"]


def bench(tmp_path: Path, targets: str, workload: str = "") -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(
        f"name: doctor\ncompose_file: {COMPOSE_FILE}\ntargets:\n{targets}"
        + (workload or "workload: {prompt_tokens: 512, output_tokens: 128}\n")
    )
    return path


COMPOSE_TARGETS = (
    "  - {name: vllm-awq, compose: vllm-awq}\n"
    "  - {name: tgi-awq, compose: tgi-awq}\n"
    "  - {name: exl2, compose: exllamav2}\n"
)


def doctor(argv: list[str], host: Host) -> tuple[int, str]:
    args = build_parser().parse_args(["doctor", *argv])
    console = Console(file=StringIO(), width=250, color_system=None)
    code = run_doctor(args, console, host)
    return code, console.file.getvalue()  # type: ignore[attr-defined]


@pytest.fixture
def sim_url() -> Iterator[str]:
    proc, url = start_sim("--timing", "fixed", "--ttft-ms", "5", "--itl-ms", "1", "--port", "0")
    yield url
    stop_sim(proc)


# ---------------------------------------------------------------- all good


@pytest.mark.slow
def test_all_good_means_exit_0(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sim_url: str
) -> None:
    from quantbench.doctor_targets import HttpProber

    targets = COMPOSE_TARGETS + f"  - {{name: by-url, url: '{sim_url}', stack: vllm}}\n"
    host = make_host(fakes, monkeypatch, good_host(tmp_path), prober=HttpProber())
    code, text = doctor([str(bench(tmp_path, targets))], host)
    assert code == 0, text
    assert "0 failed" in text and "a run can start" in text
    checks = by_name(diagnose(load_config(bench(tmp_path, targets)), COMPOSE_FILE, [], host))
    assert not failed(list(checks.values()))
    assert checks["Docker"].detail.startswith("engine 27.3.1")
    assert checks["NVIDIA Container Toolkit"].detail == f"found {HOOK}"
    assert (
        "needs CUDA 13.0 (driver >= 580.65.06)" in checks["vllm-awq: driver for its image"].detail
    )
    assert "needs CUDA 12.4" in checks["tgi-awq: driver for its image"].detail
    assert checks["exllamav2: GPU architecture"].status == "ok", "built for the A100 (sm 8.0)"
    assert checks["vllm-awq: GPU 0"].detail.startswith("vLLM claims 0.90 x 80 = 72.0 GiB")
    assert checks["GPU sharing"].detail == "one service at a time, on GPU 0"
    assert checks["secret api_key"].status == "ok"
    assert checks["target by-url"].detail == f"{sim_url} completed a probe generation"
    assert checks["target by-url: limits"].status == "ok"
    assert "512 prompt + 128 output = 640 tokens; context 4096 (prompts up to 4095)" in (
        checks["target vllm-awq: limits"].detail
    )


def test_a_service_already_running_keeps_its_port_and_memory(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = good_host(tmp_path, [{**A100, "used": 70000}])
    state["running"] = ["vllm-awq"]
    host = make_host(fakes, monkeypatch, state, port_free=lambda host, port: False)
    checks = by_name(diagnose(None, COMPOSE_FILE, ["vllm-awq"], host))
    on_gpu = checks["vllm-awq: GPU 0"]
    assert on_gpu.status == "ok" and on_gpu.detail.endswith("already running on it")
    assert checks["vllm-awq: port 127.0.0.1:8001"].detail.startswith("held by the service itself")


# ---------------------------------------------------------------- the driver


@pytest.mark.parametrize(
    ("gpu_base", "driver", "cuda", "vllm_image", "status", "expected"),
    [
        # A GeForce card on R570: the CUDA 13 image is refused, and CUDA 12.9 needs 575 too.
        (RTX4090, "570.133.07", "12.8", None, "fail", "upgrade the NVIDIA driver to >= 580.65.06;"
         " VLLM_IMAGE=vllm/vllm-openai:v0.33.0-cu129 in .env (CUDA 12.9 needs >= 575.51.03)"),
        # On R575 the CUDA 12.9 build runs: it is offered first.
        (RTX4090, "575.64.05", "12.9", None, "fail", "set VLLM_IMAGE=vllm/vllm-openai:v0.33.0-"
         "cu129 in .env (CUDA 12.9, which this driver runs), or upgrade the NVIDIA driver"),
        (RTX4090, "575.64.05", "12.9", "vllm/vllm-openai:v0.33.0-cu129", "ok", ""),
        # A data-center GPU on R570 starts the CUDA 13 image through forward compatibility.
        (A100, "570.133.20", "12.8", None, "ok", ""),
    ],
)  # fmt: skip
def test_the_driver_is_checked_against_each_image(
    fakes: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    gpu_base: dict[str, Any],
    driver: str,
    cuda: str,
    vllm_image: str | None,
    status: str,
    expected: str,
) -> None:
    if vllm_image:
        monkeypatch.setenv("VLLM_IMAGE", vllm_image)
    state = {**good_host(tmp_path, [gpu_base]), "driver": driver, "cuda": cuda}
    host = make_host(fakes, monkeypatch, state)
    checks = by_name(diagnose(None, COMPOSE_FILE, [], host))
    vllm = checks["vllm-awq: driver for its image"]
    assert vllm.status == status, vllm
    assert expected in vllm.fix
    if status == "fail":
        assert vllm.detail.endswith("the container would not start")
    if gpu_base is A100 and status == "ok":
        assert "forward compatibility" in vllm.detail
    assert checks["tgi-awq: driver for its image"].status == "ok", "CUDA 12.4 runs on >= 550"
    code, text = doctor([], host)
    assert code == (1 if status == "fail" else 0), text


def test_a_pulled_image_is_judged_by_its_own_requirement(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = good_host(tmp_path)
    env = ["CUDA_VERSION=13.1.0", "NVIDIA_REQUIRE_CUDA=cuda>=13.1"]
    state["images"] = {"vllm/vllm-openai:v0.33.0": {"Size": 21 * GIB, "Config": {"Env": env}}}
    host = make_host(fakes, monkeypatch, state)
    check = by_name(diagnose(None, COMPOSE_FILE, [], host))["vllm-awq: driver for its image"]
    assert check.status == "fail" and "needs CUDA 13.1 (driver >= 590.44.01)" in check.detail


def test_an_old_gpu_is_refused_by_the_kernels_it_lacks(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    t4 = {**A100, "name": "Tesla T4", "total": 15360, "cap": "7.5"}
    host = make_host(fakes, monkeypatch, good_host(tmp_path, [t4]))
    checks = by_name(diagnose(None, COMPOSE_FILE, [], host))
    assert checks["vllm-awq: GPU architecture"].status == "ok", "vLLM's CUDA 13 build has 7.5"
    tgi = checks["tgi-awq: GPU architecture"]
    assert tgi.status == "fail" and "compute capability 7.5" in tgi.detail


# ---------------------------------------------------------------- GPUs and sharing


def test_two_services_of_a_profile_on_one_gpu(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VLLM_GPTQ_GPU", "0")
    gpus = [A100, gpu(A100, 1), gpu(A100, 2)]
    host = make_host(fakes, monkeypatch, good_host(tmp_path, gpus))
    checks = by_name(diagnose(None, COMPOSE_FILE, ["vllm"], host))
    sharing = checks["GPU sharing"]
    assert sharing.status == "fail"
    assert "GPU 0: vllm-awq, vllm-gptq" in sharing.detail
    assert "its own *_GPU id" in sharing.fix
    assert "prometheus: port 127.0.0.1:9090" in checks, "a profile brings monitoring along"
    code, _ = doctor(["--profile", "vllm"], host)
    assert code == 1


def test_the_shipped_ids_give_a_profile_one_gpu_each(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gpus = [A100, gpu(A100, 1), gpu(A100, 2)]
    host = make_host(fakes, monkeypatch, good_host(tmp_path, gpus))
    checks = by_name(diagnose(None, COMPOSE_FILE, ["vllm"], host))
    assert checks["GPU sharing"].status == "ok"
    assert {"vllm-awq: GPU 0", "vllm-gptq: GPU 1", "vllm-fp16: GPU 2"} <= checks.keys()


def test_a_profile_needs_a_gpu_per_service_on_a_single_gpu_host(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host = make_host(fakes, monkeypatch, good_host(tmp_path))
    checks = by_name(diagnose(None, COMPOSE_FILE, ["vllm"], host))
    missing = checks["vllm-fp16: GPU 2"]
    assert missing.status == "fail" and missing.detail == "no GPU 2 on this host (have 0)"
    assert "start one service at a time" in missing.fix
    # One at a time (a config's compose targets), the same host is fine: every one on GPU 0.
    config = load_config(bench(tmp_path, "  - {name: fp16, compose: vllm-fp16}\n"))
    assert by_name(diagnose(config, COMPOSE_FILE, [], host))["vllm-fp16: GPU 0"].status == "ok"


def test_vllm_needs_its_share_of_the_gpu_free(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    busy = {**A100, "used": 20480}  # 60 of 80 GiB free, vLLM wants 72
    host = make_host(fakes, monkeypatch, good_host(tmp_path, [busy]))
    checks = by_name(diagnose(None, COMPOSE_FILE, [], host))
    vllm = checks["vllm-awq: GPU 0"]
    assert vllm.status == "fail" and "only 60.0 GiB is free: vLLM refuses to start" in vllm.detail
    assert checks["tgi-awq: GPU 0"].status == "warn", "TGI starts, on a smaller KV cache"


# ---------------------------------------------------------------- ports, secrets, disk


def test_a_port_taken_by_another_program(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from quantbench.hostfacts import port_free

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        monkeypatch.setenv("VLLM_AWQ_PORT", str(port))
        host = make_host(fakes, monkeypatch, good_host(tmp_path), port_free=port_free)
        checks = by_name(diagnose(None, COMPOSE_FILE, [], host))
    taken = checks[f"vllm-awq: port 127.0.0.1:{port}"]
    assert taken.status == "fail" and taken.detail == "in use by another program"
    assert f"sport = :{port}" in taken.fix and "*_PORT in .env" in taken.fix
    assert checks["tgi-awq: port 127.0.0.1:8011"].status in ("ok", "fail")


def test_secrets_the_containers_cannot_read(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    api_key = Path(os.environ["API_KEY_FILE"])
    api_key.chmod(0o600)
    hf_token = Path(os.environ["HF_TOKEN_FILE"])
    hf_token.unlink()
    host = make_host(fakes, monkeypatch, good_host(tmp_path))
    checks = by_name(diagnose(None, COMPOSE_FILE, [], host))
    unreadable = checks["secret api_key"]
    assert unreadable.status == "fail"
    assert "-rw-------" in unreadable.detail and "non-root" in unreadable.detail
    assert unreadable.fix.startswith(f"chmod 644 {api_key}")
    missing = checks["secret hf_token"]
    assert missing.status == "fail" and missing.fix.startswith("create it")
    assert "qb-doctor-secret" not in json.dumps([c.__dict__ for c in checks.values()])


def test_grafanas_password_must_not_be_empty(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    Path(os.environ["GRAFANA_ADMIN_PASSWORD_FILE"]).write_text("")
    gpus = [A100, gpu(A100, 1)]
    host = make_host(fakes, monkeypatch, good_host(tmp_path, gpus))
    check = by_name(diagnose(None, COMPOSE_FILE, ["tgi"], host))["secret grafana_admin_password"]
    assert check.status == "fail" and check.detail.endswith("is empty")


def test_disk_for_images_not_pulled_yet(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host = make_host(fakes, monkeypatch, good_host(tmp_path), disk_free=lambda path: 30 * GIB)
    disk = by_name(diagnose(None, COMPOSE_FILE, [], host))["disk"]
    assert disk.status == "fail", disk
    assert f"30 GB free in {tmp_path}" in disk.detail


# ---------------------------------------------------------------- targets and limits


def test_a_workload_longer_than_the_context(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host = make_host(fakes, monkeypatch, good_host(tmp_path))
    workload = "workload: {prompt_tokens: 512, output_tokens: 4000}\n"
    config = load_config(bench(tmp_path, COMPOSE_TARGETS, workload))
    checks = by_name(diagnose(config, COMPOSE_FILE, [], host))
    limits = checks["target tgi-awq: limits"]
    assert limits.status == "fail"
    assert limits.detail.startswith("512 prompt + 4000 output = 4512 tokens; context 4096")
    assert "MAX_MODEL_LEN" in limits.fix
    normal = "workload: {prompt_tokens: {dist: normal, mean: 3500, std: 200}, output_tokens: 128}\n"
    config = load_config(bench(tmp_path, COMPOSE_TARGETS, normal))
    checks = by_name(diagnose(config, COMPOSE_FILE, [], host))
    assert checks["target exl2: limits"].status == "warn", "only the 0.1% tail would not fit"


def test_limits_that_differ_between_stacks_are_flagged(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host = make_host(fakes, monkeypatch, good_host(tmp_path))
    assert by_name(diagnose(None, COMPOSE_FILE, [], host))["engine limits"].status == "ok"
    monkeypatch.setenv("MAX_INPUT_TOKENS", "3072")  # the old TGI-only limit
    check = by_name(diagnose(None, COMPOSE_FILE, [], host))["engine limits"]
    assert check.status == "warn" and "tgi-awq 4096/3072" in check.detail
    assert "vllm-awq 4096/4095" in check.detail


def test_a_url_target_that_does_not_generate(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prober = FakeProber(problem="target x: ... last attempt: connect_error")
    host = make_host(fakes, monkeypatch, good_host(tmp_path), prober=prober)
    config = load_config(bench(tmp_path, "  - {name: x, url: 'http://127.0.0.1:9'}\n"))
    checks = by_name(diagnose(config, COMPOSE_FILE, [], host))
    check = checks["target x"]
    assert check.status == "fail" and "does not generate: target x" in check.detail
    assert prober.asked == ["http://127.0.0.1:9"]
    assert "target x: limits" not in checks
    assert "vllm-awq: GPU 0" not in checks, "a config without compose targets starts none"


def test_a_real_probe_of_a_closed_port_fails_in_time(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from quantbench.doctor_targets import HttpProber

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        host = make_host(fakes, monkeypatch, good_host(tmp_path), prober=HttpProber(),
                         probe_timeout_s=1.0)  # fmt: skip
        target = f"  - {{name: gone, url: 'http://127.0.0.1:{port}', stack: vllm}}\n"
        checks = by_name(diagnose(load_config(bench(tmp_path, target)), COMPOSE_FILE, [], host))
    assert checks["target gone"].status == "fail"
    detail = checks["target gone"].detail  # no `model:`: the model discovery is refused first
    assert "/v1/models: [Errno 111] Connection refused" in detail, detail


# ---------------------------------------------------------------- bad input and no host at all


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["doctor", "missing.yaml"], "missing.yaml: cannot read"),
        (["doctor", "--profile", "vlm"], "--profile vlm: no such profile in "),
        (["doctor", "--compose-file", "nope.yml"], "nope.yml: no such compose file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    fakes: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    expected: str,
) -> None:
    make_host(fakes, monkeypatch, good_host(tmp_path))
    monkeypatch.setenv("PATH", f"{Path(fakes[0]).parent}:{os.environ['PATH']}")
    monkeypatch.chdir(REPO_ROOT)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err


def test_an_unknown_compose_service_in_the_config_is_bad_input(
    fakes: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from quantbench.errors import QuantbenchError

    host = make_host(fakes, monkeypatch, good_host(tmp_path))
    config = load_config(bench(tmp_path, "  - {name: x, compose: vllm-awk}\n"))
    with pytest.raises(QuantbenchError, match="compose service 'vllm-awk' is not in"):
        diagnose(config, COMPOSE_FILE, [], host)


def bare_machine_doctor(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`quantbench doctor` as on this machine: no Docker engine, no GPU. An empty PATH makes
    that so on any machine."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env.update(PATH=str(empty), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "quantbench", "doctor", *argv],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_real_cli_on_a_machine_without_docker_or_a_gpu(tmp_path: Path) -> None:
    done = bare_machine_doctor(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert "no Docker: `docker` not found" in out
    assert "no GPU: `nvidia-smi` not found (no NVIDIA driver)" in out
    assert "quantbench demo" in out, "the way forward without a GPU"
    assert "a run cannot start" in out


def test_simulators_need_no_docker_or_gpu_on_this_host(tmp_path: Path) -> None:
    """A config of `sim:` targets runs on a bare machine: the doctor must not say otherwise."""
    config = tmp_path / "sims.yaml"
    config.write_text(
        "name: sims\ntargets:\n  - {name: a, sim: {stack: vllm, quant: awq}}\n"
        "workload: {prompt_tokens: 64, output_tokens: 16}\nload: {stages: [1]}\n"
    )
    done = bare_machine_doctor(tmp_path, str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "no Docker: `docker` not found" in out, "the finding is still shown"
    assert "not needed: no `compose:` target" in out
    assert "0 failed" in out and "a run can start" in out


def test_the_secret_mode_is_read_not_guessed(tmp_path: Path) -> None:
    from quantbench.doctor import check_secret

    path = tmp_path / "token"
    path.write_text("x")
    path.chmod(0o666)
    assert check_secret("hf_token", str(path), needs_value=False).status == "warn"
    path.chmod(0o644)
    ok = check_secret("hf_token", str(path), needs_value=False)
    assert ok.status == "ok" and ok.detail.endswith("set, mode -rw-r--r--")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("facts", "status", "expected"),
    [
        (DockerFacts(error="`docker` not found"), "fail", "no Docker: `docker` not found"),
        (DockerFacts(client="27.3.1", error="permission denied while trying to connect"),
         "fail", "Docker refuses this user"),
        (DockerFacts(client="19.03.1", server="19.03.1", compose="2.40.3"), "fail", "engine 19.03"),
        (DockerFacts(client="27.3.1", server="27.3.1", compose="2.40.3"), "ok", "engine 27.3.1"),
    ],
)  # fmt: skip
def test_docker_versions(facts: DockerFacts, status: str, expected: str) -> None:
    check = check_docker(facts)
    assert check.status == status and expected in check.detail
    assert bool(check.fix) == (status == "fail")


def test_compose_and_toolkit_versions() -> None:
    old = check_compose(DockerFacts(server="27.3.1", compose="2.20.2"))
    assert old.status == "fail" and ">= 2.30" in old.fix
    missing = check_compose(DockerFacts(server="27.3.1", compose_error="unknown command"))
    assert missing.status == "fail" and "unknown command" in missing.detail
    assert check_toolkit(DockerFacts(runtimes=("runc",)), None).status == "fail"
    assert check_toolkit(DockerFacts(runtimes=("nvidia", "runc")), None).status == "ok"
    cdi = DockerFacts(cdi_devices=("nvidia.com/gpu=0",))
    assert check_toolkit(cdi, None).detail == "found CDI devices"


def test_the_table_on_a_terminal(tmp_path: Path) -> None:
    """What a user sees: the CLI on a pseudo-terminal, 100 columns, no GPU and no Docker."""
    import pty

    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env.update(PATH=str(empty), COLUMNS="100", LINES="50", TERM="xterm")
    env.pop("NO_COLOR", None)
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantbench", "doctor"],
        cwd=REPO_ROOT, env=env, stdin=secondary, stdout=secondary, stderr=secondary,
    )  # fmt: skip
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert proc.wait(timeout=60) == 1
    screen = b"".join(chunks).decode()
    assert "\x1b[" in screen, "colours on a terminal"
    plain = re.sub(r"\x1b\[[0-9;]*m", "", screen)
    lines = plain.splitlines()
    assert all(len(line.rstrip("\r")) <= 100 for line in lines), "fits the terminal's width"
    assert "quantbench doctor" in plain and "FAIL" in plain and "Traceback" not in plain
    assert "a run cannot start" in plain
