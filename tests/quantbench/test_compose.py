"""quantbench/compose.py against a fake `docker`: the exact command lines it runs, and one clear
line for each way Docker fails. `compose config` is answered by the real Compose v2 binary on
the real docker-compose.yml, so service lookups and resolved flags are the file's own."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from quantbench.compose import ComposeProject, ImageInfo, redact_args
from quantbench.errors import HarnessError
from tests.deploy.helpers import compose_binary, write_secret_files
from tests.procs import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
MARKER = "qb-fake-docker-secret-41d2"

# The fake: logs its argv as one JSON line (and, with FAKE_ENV_LOG, the GPU_ID each verb saw);
# `compose config` runs the real binary; other verbs print FAKE_OUT_<VERB>; FAKE_FAIL=<verb>
# makes that verb exit FAKE_RC with FAKE_STDERR.
# The verb of `docker compose [global flags] VERB ...`, for fake `docker` scripts.
COMPOSE_VERB = """\
def compose_verb(args):
    takes_value = {{"-f", "--project-directory", "--env-file", "-p", "--profile"}}
    rest = args[1:]
    while rest and rest[0] in takes_value:
        rest = rest[2:]
    return rest[0] if rest else ""
"""

FAKE_DOCKER = (
    """\
#!{python}
import json, os, sys
"""
    + COMPOSE_VERB
    + """
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] == ["image", "inspect"]:
    verb = "inspect"
elif args and args[0] == "compose":
    verb = compose_verb(args)
    if verb == "config" and not os.environ.get("FAKE_FAIL") == "config":
        os.execv({compose!r}, [{compose!r}, *args[1:]])
else:
    sys.stderr.write("docker: unknown command: docker " + " ".join(args[:1]) + "\\n")
    sys.exit(1)
if os.environ.get("FAKE_ENV_LOG"):
    with open(os.environ["FAKE_ENV_LOG"], "a") as log:
        log.write(json.dumps([verb, os.environ.get("GPU_ID")]) + "\\n")
if os.environ.get("FAKE_FAIL") == verb:
    sys.stderr.write(os.environ.get("FAKE_STDERR", ""))
    sys.exit(int(os.environ.get("FAKE_RC", "1")))
sys.stdout.write(os.environ.get("FAKE_OUT_" + verb.upper(), ""))
"""
)

NO_ENGINE = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
    "Is the docker daemon running?\n"
)
# Texts as Docker 20.10 with Compose 2.40 printed them (the GPU, registry, unhealthy, exited
# and timeout cases were captured from a real engine; the others from public reports).
NO_GPU = (
    " Container quantbench-vllm-awq-1  Starting\n"
    'Error response from daemon: could not select device driver "nvidia" with '
    "capabilities: [[gpu]]\n"
)
NO_REGISTRY = (
    " tgi-awq Pulling \n"
    ' tgi-awq Error Get "https://ghcr.io/v2/": dial tcp: lookup ghcr.io on 10.0.0.53:53: '
    "no such host\n"
    'Error response from daemon: Get "https://ghcr.io/v2/": dial tcp: lookup ghcr.io on '
    "10.0.0.53:53: no such host\n"
)
PULL_DENIED = (
    "Error response from daemon: pull access denied for quantbench-exllamav2, repository does "
    "not exist or may require 'docker login': denied: requested access to the resource is denied\n"
)
NO_MANIFEST = (
    "Error response from daemon: manifest for vllm/vllm-openai:v0.33.0 not found: "
    "manifest unknown: manifest unknown\n"
)
UNHEALTHY = (
    " Container quantbench-vllm-awq-1  Started\n Container quantbench-vllm-awq-1  Waiting\n"
    "container quantbench-vllm-awq-1 is unhealthy\n"
)
EXITED = " Container quantbench-vllm-awq-1  Waiting\ncontainer quantbench-vllm-awq-1 exited (3)\n"
WAIT_TIMEOUT = " Container quantbench-vllm-awq-1  Waiting\napplication not healthy after 10m0s\n"
NO_PLUGIN = "docker: unknown command: docker compose\n\nRun 'docker --help' for more information\n"
# This machine's Docker CLI (no Compose plugin) reads `compose -f FILE` as its own flags:
NO_PLUGIN_FLAG = (
    "unknown shorthand flag: 'f' in -f\n\nUsage:  docker [OPTIONS] COMMAND [ARG...]\n\n"
    "Run 'docker --help' for more information\n"
)
NO_ACCESS = (
    "permission denied while trying to connect to the Docker daemon socket at "
    'unix:///var/run/docker.sock: Head "http://%2Fvar%2Frun%2Fdocker.sock/_ping": '
    "dial unix /var/run/docker.sock: connect: permission denied\n"
)
PORT_TAKEN = (
    "Error response from daemon: driver failed programming external connectivity on endpoint "
    "quantbench-vllm-awq-1 (abc): Bind for 127.0.0.1:8001 failed: port is already allocated\n"
)
# libnvidia-container's refusal of a CUDA 13 image on an older driver (the form of
# vllm-project/vllm#5635, with the version the CUDA 13 vLLM images require).
CUDA_TOO_OLD = (
    "Error response from daemon: failed to create task for container: failed to create shim "
    "task: OCI runtime create failed: runc create failed: unable to start container process: "
    "error during container init: error running hook #0: error running hook: exit status 1, "
    "stdout: , stderr: Auto-detected mode as 'legacy'\n"
    "nvidia-container-cli: requirement error: unsatisfied condition: cuda>=13.0, please update "
    "your driver to a newer version, or use an earlier cuda container: unknown\n"
)
BAD_DEVICE = (
    "Error response from daemon: failed to create task for container: failed to create shim "
    "task: OCI runtime create failed: runc create failed: unable to start container process: "
    "error during container init: error running hook #0: error running hook: exit status 1, "
    "stdout: , stderr: Auto-detected mode as 'legacy'\n"
    "nvidia-container-cli: device error: 3: unknown device: unknown\n"
)


@pytest.fixture()
def fake(tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "bin" / "docker"
    script.parent.mkdir()
    script.write_text(FAKE_DOCKER.format(python=sys.executable, compose=str(compose_binary())))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "docker.log"
    env = {"FAKE_LOG": str(log), **write_secret_files(tmp_path / "secrets", MARKER)}
    return {"docker": str(script), "log": log, "env": env}


def project(fake: dict[str, Any], **env: str) -> ComposeProject:
    return ComposeProject(COMPOSE_FILE, docker=fake["docker"], env={**fake["env"], **env})


def calls(fake: dict[str, Any]) -> list[list[str]]:
    return [json.loads(line) for line in fake["log"].read_text().splitlines()]


def base(profile: str) -> list[str]:
    return [
        "compose", "-f", str(COMPOSE_FILE), "--project-directory", str(REPO_ROOT),
        "--profile", profile,
    ]  # fmt: skip


# ---------------------------------------------------------------- command lines


def test_up_reads_the_profile_then_waits_for_health(fake: dict[str, Any]) -> None:
    project(fake).up("vllm-awq", timeout_s=900)
    assert calls(fake) == [
        [*base("*"), "config", "--format", "json"],
        [*base("vllm"), "up", "-d", "--wait", "--wait-timeout", "900", "vllm-awq"],
    ]


def test_profiles_follow_the_stack(fake: dict[str, Any]) -> None:
    compose = project(fake)
    assert compose.profile_of("tgi-gptq") == "tgi"
    assert compose.profile_of("exllamav2") == "exllamav2"
    assert compose.profile_of("sim-vllm-fp16") == "sim"
    assert compose.profile_of("prometheus") is None
    compose.up("prometheus", timeout_s=60)
    assert calls(fake)[-1] == [
        "compose", "-f", str(COMPOSE_FILE), "--project-directory", str(REPO_ROOT),
        "up", "-d", "--wait", "--wait-timeout", "60", "prometheus",
    ]  # fmt: skip


def test_config_is_read_once(fake: dict[str, Any]) -> None:
    compose = project(fake)
    compose.profile_of("vllm-awq")
    compose.stop("vllm-awq")
    compose.down("vllm-awq")
    verbs = [call for call in calls(fake) if "config" in call]
    assert len(verbs) == 1
    assert calls(fake)[1:] == [
        [*base("vllm"), "stop", "vllm-awq"],
        [*base("vllm"), "rm", "--stop", "--force", "vllm-awq"],
    ]


def test_env_file_and_project_name_are_passed(fake: dict[str, Any], tmp_path: Path) -> None:
    compose = ComposeProject(
        COMPOSE_FILE,
        tmp_path,
        docker=fake["docker"],
        env=fake["env"],
        env_file=REPO_ROOT / ".env.example",
        project_name="qb-nightly",
    )
    assert compose.compose_command("ps", profile="tgi") == [
        fake["docker"], "compose", "-f", str(COMPOSE_FILE), "--project-directory", str(tmp_path),
        "--env-file", str(REPO_ROOT / ".env.example"), "-p", "qb-nightly", "--profile", "tgi", "ps",
    ]  # fmt: skip
    assert compose.services()[:3] == ["dcgm-exporter", "exllamav2", "exllamav2-fetch"]


@pytest.mark.parametrize(
    ("service", "port", "printed", "url"),
    [
        ("vllm-awq", "8000", "127.0.0.1:8001\n", "http://127.0.0.1:8001"),
        ("tgi-awq", "80", "127.0.0.1:8011\n", "http://127.0.0.1:8011"),
        ("sim-exllamav2", "8000", "0.0.0.0:18021\n", "http://127.0.0.1:18021"),
        ("vllm-fp16", "8000", "[::1]:8003\n", "http://[::1]:8003"),
    ],
)
def test_published_url(
    fake: dict[str, Any], service: str, port: str, printed: str, url: str
) -> None:
    compose = project(fake, FAKE_OUT_PORT=printed)
    assert compose.published_url(service) == url
    profile = compose.profile_of(service)
    assert calls(fake)[-1] == [*base(str(profile)), "port", service, port]


def test_unpublished_port_is_a_clear_error(fake: dict[str, Any]) -> None:
    with pytest.raises(HarnessError, match=r"port 8000 is not published .* is the service running"):
        project(fake, FAKE_OUT_PORT="").published_url("vllm-awq")
    with pytest.raises(HarnessError, match="exllamav2-fetch: publishes no port"):
        project(fake).published_url("exllamav2-fetch")


def test_image_digest(fake: dict[str, Any]) -> None:
    images = [
        {
            "ID": "sha256:" + "a" * 64,
            "ContainerName": "quantbench-vllm-awq-1",
            "Repository": "vllm/vllm-openai",
            "Tag": "v0.33.0",
            "Platform": "linux/amd64",
            "Size": 1,
        }
    ]
    compose = project(
        fake,
        FAKE_OUT_IMAGES=json.dumps(images),
        FAKE_OUT_INSPECT='["vllm/vllm-openai@sha256:' + "b" * 64 + '"]\n',
    )
    info = compose.image_digest("vllm-awq")
    assert info == ImageInfo(
        image="vllm/vllm-openai:v0.33.0",
        image_id="sha256:" + "a" * 64,
        repo_digest="vllm/vllm-openai@sha256:" + "b" * 64,
    )
    assert info.to_dict()["repo_digest"].endswith("b" * 64)
    assert calls(fake)[-2:] == [
        [*base("vllm"), "images", "--format", "json", "vllm-awq"],
        ["image", "inspect", "--format", "{{json .RepoDigests}}", "sha256:" + "a" * 64],
    ]


def test_locally_built_image_has_no_repo_digest(fake: dict[str, Any]) -> None:
    images = [{"ID": "sha256:" + "c" * 64, "Repository": "quantbench-sim", "Tag": "local"}]
    compose = project(fake, FAKE_OUT_IMAGES=json.dumps(images), FAKE_OUT_INSPECT="[]\n")
    info = compose.image_digest("sim-vllm-awq")
    assert info.repo_digest is None and info.image == "quantbench-sim:local"


@pytest.mark.parametrize("printed", ["[]", "null\n", ""])
def test_no_container_means_no_digest(fake: dict[str, Any], printed: str) -> None:
    with pytest.raises(HarnessError, match="vllm-awq: has no container"):
        project(fake, FAKE_OUT_IMAGES=printed).image_digest("vllm-awq")


def test_resolved_config_has_flags_and_names_but_no_secret(fake: dict[str, Any]) -> None:
    resolved = project(fake).resolved_config("vllm-awq")
    assert resolved["image"] == "vllm/vllm-openai:v0.33.0"
    assert "--served-model-name=qwen2.5-7b-instruct-awq" in resolved["command"]
    assert resolved["command"][0] == "Qwen/Qwen2.5-7B-Instruct-AWQ"
    assert resolved["environment"] == ["DO_NOT_TRACK", "VLLM_NO_USAGE_STATS"]
    assert resolved["secrets"] == ["api_key", "hf_token"]
    assert resolved["gpus"] == ["0"]
    assert resolved["labels"] == {"io.quantbench.stack": "vllm", "io.quantbench.quant": "awq"}
    assert resolved["ports"] == [{"host_ip": "127.0.0.1", "published": "8001", "target": 8000}]
    assert resolved["healthcheck"]["start_period"] == "20m0s"
    assert MARKER not in json.dumps(resolved)
    sim = project(fake).resolved_config("sim-tgi-awq")
    assert sim["build"] == {"dockerfile": "services/sim/Dockerfile"} and sim["gpus"] == []


def test_resolved_config_follows_the_environment(fake: dict[str, Any]) -> None:
    compose = project(fake, VLLM_AWQ_GPU="3", MAX_MODEL_LEN="8192", AWQ_REVISION="abc123")
    resolved = compose.resolved_config("vllm-awq")
    assert resolved["gpus"] == ["3"]
    assert "--max-model-len=8192" in resolved["command"]
    assert "--revision=abc123" in resolved["command"]


def test_redact_args() -> None:
    args = ["m", "--api-key", "sk-1", "--api-key=sk-2", "--hf-token", "t", "--token=x", "--port=80"]
    assert redact_args(args) == [
        "m", "--api-key", "<redacted>", "--api-key=<redacted>", "--hf-token", "<redacted>",
        "--token=<redacted>", "--port=80",
    ]  # fmt: skip


def test_running_starts_and_removes_what_it_started(fake: dict[str, Any]) -> None:
    compose = project(fake, FAKE_OUT_PORT="127.0.0.1:8002\n", FAKE_OUT_PS="")
    with compose.running("vllm-gptq", timeout_s=30, target="gptq") as url:
        assert url == "http://127.0.0.1:8002"
    verbs = [call[len(base("vllm"))] for call in calls(fake)[1:]]
    assert verbs == ["ps", "up", "port", "rm"]


def test_running_leaves_a_service_that_was_already_up(fake: dict[str, Any]) -> None:
    ps = json.dumps({"Service": "vllm-gptq", "State": "running", "Health": "healthy"}) + "\n"
    compose = project(fake, FAKE_OUT_PORT="127.0.0.1:8002\n", FAKE_OUT_PS=ps)
    with compose.running("vllm-gptq", timeout_s=30):
        pass
    verbs = [call[len(base("vllm"))] for call in calls(fake)[1:]]
    assert verbs == ["ps", "up", "port"]


def test_running_removes_the_service_when_the_block_fails(fake: dict[str, Any]) -> None:
    compose = project(fake, FAKE_OUT_PORT="127.0.0.1:8002\n")
    with pytest.raises(RuntimeError), compose.running("vllm-gptq", timeout_s=30):
        raise RuntimeError("measurement failed")
    assert calls(fake)[-1] == [*base("vllm"), "rm", "--stop", "--force", "vllm-gptq"]


# ---------------------------------------------------------------- one line per failure

FAILURES = [
    ("up", 1, NO_ENGINE, "no Docker engine is reachable (start it"),
    ("up", 1, NO_ACCESS, "this user may not use Docker (add it to the `docker` group"),
    ("up", 1, NO_GPU, "Docker cannot hand out a GPU (install the NVIDIA Container Toolkit"),
    ("up", 1, BAD_DEVICE, "could not attach the GPU (device error: 3: unknown device"),
    (
        "up",
        1,
        CUDA_TOO_OLD,
        "the host's NVIDIA driver is too old for its image, which needs CUDA 13.0 (upgrade the "
        "driver to >= 580.65.06",
    ),
    ("up", 1, PULL_DENIED, "its image cannot be pulled (pull access denied for quantbench-ex"),
    ("up", 1, NO_MANIFEST, "its image cannot be pulled (manifest for vllm/vllm-openai:v0.33.0"),
    ("up", 1, NO_REGISTRY, 'the registry is unreachable (Get "https://ghcr.io/v2/": dial tcp'),
    ("up", 1, UNHEALTHY, "failed its healthcheck (container quantbench-vllm-awq-1 is unhealthy"),
    ("up", 1, EXITED, "failed its healthcheck (container quantbench-vllm-awq-1 exited (3); see"),
    ("up", 1, WAIT_TIMEOUT, "not healthy after 10m0s (still downloading or loading the model?"),
    ("up", 1, PORT_TAKEN, "its host port is taken (driver failed programming"),
    (
        "up",
        125,
        NO_PLUGIN,
        "the Docker Compose v2 plugin is missing (install docker-compose-plugin",
    ),
    (
        "up",
        125,
        NO_PLUGIN_FLAG,
        "the Docker Compose v2 plugin is missing (install docker-compose-plugin",
    ),
    ("up", 1, "unknown flag: --wait-timeout\n", "Docker Compose is too old"),
    ("up", 1, "secret file hf_token does not exist\n", "its secret file hf_token is missing"),
    (
        "up",
        1,
        'Error response from daemon: invalid mount config for type "bind": bind source path '
        "does not exist: /srv/qb/secrets/api_key\n",
        "a file it mounts is missing: /srv/qb/secrets/api_key (create the secret files",
    ),
    ("up", 1, "something new went wrong\nwith a second line\n", "start: with a second line"),
]


@pytest.mark.parametrize(("verb", "rc", "stderr", "expected"), FAILURES)
def test_docker_failures_become_one_line(
    fake: dict[str, Any], verb: str, rc: int, stderr: str, expected: str
) -> None:
    compose = project(fake, FAKE_FAIL=verb, FAKE_RC=str(rc), FAKE_STDERR=stderr)
    with pytest.raises(HarnessError) as caught:
        compose.up("vllm-awq", timeout_s=600, target="awq")
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith("target awq (compose service vllm-awq): cannot start: "), message
    assert expected in message, message


def test_a_failed_start_quotes_the_last_log_line(fake: dict[str, Any]) -> None:
    compose = project(
        fake,
        FAKE_FAIL="up",
        FAKE_STDERR=UNHEALTHY,
        FAKE_OUT_LOGS="INFO loading weights\ntorch.OutOfMemoryError: CUDA out of memory.\n",
    )
    with pytest.raises(HarnessError) as caught:
        compose.up("vllm-awq", timeout_s=600)
    message = str(caught.value)
    assert message.endswith("; its last log line: torch.OutOfMemoryError: CUDA out of memory.")
    assert "see `docker compose logs vllm-awq`" in message and "\n" not in message
    assert calls(fake)[-1] == [
        *base("vllm"), "logs", "--no-color", "--no-log-prefix", "--tail", "20", "vllm-awq",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("verb", "call", "expected"),
    [
        (
            "ps",
            lambda c: c.is_running("tgi-awq"),
            "compose service tgi-awq: cannot list: no Docker",
        ),
        ("port", lambda c: c.published_url("tgi-awq"), "tgi-awq: cannot find its port: no Docker"),
        ("rm", lambda c: c.down("tgi-awq"), "tgi-awq: cannot stop and remove: no Docker engine"),
        ("images", lambda c: c.image_digest("tgi-awq"), "cannot list its image: no Docker engine"),
    ],
)
def test_every_command_maps_failures(
    fake: dict[str, Any], verb: str, call: Any, expected: str
) -> None:
    compose = project(fake, FAKE_FAIL=verb, FAKE_STDERR=NO_ENGINE)
    with pytest.raises(HarnessError, match=expected):
        call(compose)


def test_unknown_service_lists_the_known_ones(fake: dict[str, Any]) -> None:
    with pytest.raises(HarnessError) as caught:
        project(fake).up("vllm-awk", timeout_s=60, target="awq")
    message = str(caught.value)
    assert message.startswith("target awq: compose service 'vllm-awk' is not in ")
    assert "(have: dcgm-exporter, exllamav2, exllamav2-fetch, grafana," in message
    assert len(calls(fake)) == 1, "nothing is started for an unknown service"


def test_broken_compose_file_names_the_file(fake: dict[str, Any]) -> None:
    stderr = "yaml: line 3: mapping values are not allowed in this context\n"
    with pytest.raises(HarnessError) as caught:
        project(fake, FAKE_FAIL="config", FAKE_STDERR=stderr).up("vllm-awq", 60)
    assert str(caught.value) == (
        f"{COMPOSE_FILE}: cannot read it: yaml: line 3: mapping values are not allowed in this "
        "context"
    )


def test_missing_docker_binary(tmp_path: Path) -> None:
    compose = ComposeProject(COMPOSE_FILE, docker=str(tmp_path / "no-such-docker"))
    with pytest.raises(HarnessError) as caught:
        compose.up("vllm-awq", 60)
    assert "no-such-docker` not found (install Docker Engine with the Compose plugin" in str(
        caught.value
    )


def test_a_hung_command_times_out_with_one_line() -> None:
    config = json.dumps({"services": {"vllm-awq": {"profiles": ["vllm"]}}})

    def runner(args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if "config" in args:
            return subprocess.CompletedProcess(list(args), 0, config, "")
        raise subprocess.TimeoutExpired(list(args), kwargs["timeout"])

    compose = ComposeProject(COMPOSE_FILE, runner=runner)
    with pytest.raises(HarnessError) as caught:
        compose.stop("vllm-awq", target="awq")
    assert str(caught.value) == (
        "target awq (compose service vllm-awq): cannot stop: `docker compose stop` did not "
        "finish within 120 s"
    )


def test_runner_receives_the_extra_environment() -> None:
    seen: dict[str, Any] = {}

    def runner(args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.update(kwargs)
        return subprocess.CompletedProcess(list(args), 0, '{"services": {}}', "")

    ComposeProject(COMPOSE_FILE, env={"HF_TOKEN_FILE": "/x"}, runner=runner).services()
    assert seen["env"]["HF_TOKEN_FILE"] == "/x"
    assert seen["env"]["PATH"] == os.environ["PATH"]
    assert seen["capture_output"] is True and seen["check"] is False


def test_a_driver_too_old_for_the_image_is_not_blamed_on_the_gpu_ids(
    fake: dict[str, Any],
) -> None:
    compose = project(fake, FAKE_FAIL="up", FAKE_STDERR=CUDA_TOO_OLD)
    with pytest.raises(HarnessError) as caught:
        compose.up("vllm-awq", timeout_s=600)
    message = str(caught.value)
    assert "VLLM_IMAGE=vllm/vllm-openai:v0.33.0-cu129" in message, "the CUDA 12 build is offered"
    assert "quantbench doctor" in message
    assert "GPU_ID" not in message and "*_GPU" not in message, "not a GPU id problem"


def _gpu_ids_seen(log: Path) -> dict[str, str | None]:
    return {verb: gpu for verb, gpu in (json.loads(line) for line in log.read_text().splitlines())}


@pytest.mark.parametrize(("env", "solo"), [({}, "0"), ({"GPU_ID": "2"}, "2")])
def test_a_service_started_alone_runs_on_the_solo_gpu(
    fake: dict[str, Any], tmp_path: Path, env: dict[str, str], solo: str
) -> None:
    env_log = tmp_path / "env.log"
    compose = project(fake, FAKE_OUT_PORT="127.0.0.1:8002\n", FAKE_OUT_PS="",
                      FAKE_ENV_LOG=str(env_log), **env)  # fmt: skip
    assert compose.service_config("vllm-gptq")["deploy"]["resources"]["reservations"]["devices"][0][
        "device_ids"
    ] == [solo if env else "1"], "GPU_ID unset: its own id, for profiles"
    with compose.running("vllm-gptq", timeout_s=30):
        resolved = compose.resolved_config("vllm-gptq")
    assert _gpu_ids_seen(env_log)["up"] == solo, "one GPU is enough for every service"
    assert resolved["gpus"] == [solo], "run.json records the GPU it ran on"
    up = next(call for call in calls(fake) if "up" in call)
    assert "--no-recreate" not in up


def test_a_service_already_running_is_not_moved(fake: dict[str, Any], tmp_path: Path) -> None:
    env_log = tmp_path / "env.log"
    ps = json.dumps({"Service": "vllm-gptq", "State": "running", "Health": "healthy"}) + "\n"
    compose = project(fake, FAKE_OUT_PORT="127.0.0.1:8002\n", FAKE_OUT_PS=ps,
                      FAKE_ENV_LOG=str(env_log))  # fmt: skip
    with compose.running("vllm-gptq", timeout_s=30):
        resolved = compose.resolved_config("vllm-gptq")
    up = next(call for call in calls(fake) if "up" in call)
    assert "--no-recreate" in up, "up must not recreate it on another GPU"
    assert _gpu_ids_seen(env_log)["up"] is None
    assert resolved["gpus"] == ["1"]
