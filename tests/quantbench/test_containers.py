"""Container facts through the Docker Engine API: the real `docker` SDK against a fake Engine on
a unix socket. An OOM kill, a restart or a replaced container is a reason to invalidate a
stage; stats give CPU cores and memory without page cache; a failing container's last log
lines land in logs/ with secrets redacted; an unreachable Docker is one clear line."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from quantbench.containers import (
    LOGS_DIR,
    Containers,
    ContainerStats,
    DockerUnavailable,
    stage_resources,
)
from tests.quantbench.docker_fakes import (
    FakeContainer,
    FakeEngine,
    container_json,
    stats_json,
)

VLLM_ID = "3f2b9c" + "0" * 58
VLLM_IMAGE_ID = "sha256:" + "a1" * 32
DIGEST = "vllm/vllm-openai@sha256:" + "b2" * 32
EXL2_ID = "7c1d00" + "1" * 58
EXL2_IMAGE_ID = "sha256:" + "c3" * 32


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    # A short path: unix socket paths are limited to ~107 bytes.
    with tempfile.TemporaryDirectory(prefix="qb-docker-") as directory:
        fake = FakeEngine(Path(directory) / "docker.sock")
        fake.images[VLLM_IMAGE_ID] = {
            "Id": VLLM_IMAGE_ID,
            "RepoTags": ["vllm/vllm-openai:v0.33.0"],
            "RepoDigests": [DIGEST],
        }
        fake.images[EXL2_IMAGE_ID] = {
            "Id": EXL2_IMAGE_ID,
            "RepoTags": ["quantbench-exllamav2:local"],
            "RepoDigests": [],  # built here, never pushed
        }
        fake.containers[VLLM_ID] = FakeContainer(
            container_json(
                VLLM_ID, "vllm-awq", image="vllm/vllm-openai:v0.33.0", image_id=VLLM_IMAGE_ID
            )
        )
        fake.containers[EXL2_ID] = FakeContainer(
            container_json(
                EXL2_ID,
                "exllamav2",
                image="quantbench-exllamav2:local",
                image_id=EXL2_IMAGE_ID,
                tty=True,
            )
        )
        fake.start()
        try:
            yield fake
        finally:
            fake.stop()


@pytest.fixture
def containers(engine: FakeEngine) -> Containers:
    client = docker.DockerClient(base_url=engine.base_url, version="auto")
    return Containers(project="quantbench", client=client)


def test_facts_of_a_running_pulled_container(containers: Containers, engine: FakeEngine) -> None:
    facts = containers.facts("vllm-awq")
    assert facts.container_id == VLLM_ID and facts.name == "quantbench-vllm-awq-1"
    assert facts.image == "vllm/vllm-openai:v0.33.0" and facts.image_id == VLLM_IMAGE_ID
    assert facts.repo_digest == DIGEST
    assert facts.status == "running" and facts.health == "healthy"
    assert facts.started_at == "2026-11-27T07:12:03.123456789Z"
    assert facts.started_wall_s == pytest.approx(1_795_763_523.123457, abs=1e-5)
    assert (facts.restart_count, facts.oom_killed, facts.exit_code) == (0, False, 0)
    assert any("/containers/json?" in r and "vllm-awq" in r for r in engine.requests), (
        "the service is found by compose's labels through the API"
    )


def test_a_locally_built_image_has_no_registry_digest(containers: Containers) -> None:
    assert containers.facts("exllamav2").repo_digest is None


def test_an_oom_kill_during_a_stage_is_its_invalid_reason(
    containers: Containers, engine: FakeEngine
) -> None:
    before = containers.facts("vllm-awq")
    assert containers.facts("vllm-awq").change_since(before) is None, "nothing happened"
    state = engine.containers[VLLM_ID].inspect["State"]
    state.update(Status="exited", Running=False, OOMKilled=True, ExitCode=137,
                 FinishedAt="2026-11-27T07:19:58.5Z")  # fmt: skip
    after = containers.facts("vllm-awq")
    assert after.oom_killed and after.exit_code == 137 and after.status == "exited"
    assert after.change_since(before) == "container quantbench-vllm-awq-1 was OOM-killed"


def test_a_restart_during_a_stage_is_its_invalid_reason(
    containers: Containers, engine: FakeEngine
) -> None:
    before = containers.facts("vllm-awq")
    inspect = engine.containers[VLLM_ID].inspect
    inspect["RestartCount"] = 1
    inspect["State"]["StartedAt"] = "2026-11-27T07:18:41.000000001Z"
    assert containers.facts("vllm-awq").change_since(before) == (
        "container quantbench-vllm-awq-1 restarted (restart count 0 -> 1)"
    )
    inspect["RestartCount"] = 0  # `docker compose restart` keeps the count, not the start time
    assert containers.facts("vllm-awq").change_since(before) == (
        "container quantbench-vllm-awq-1 restarted "
        "(started again at 2026-11-27T07:18:41.000000001Z)"
    )


def test_a_replaced_container_is_noticed(containers: Containers, engine: FakeEngine) -> None:
    before = containers.facts("vllm-awq")
    old = engine.containers.pop(VLLM_ID)
    new_id = "9" * 64
    inspect = container_json(new_id, "vllm-awq", image="vllm/vllm-openai:v0.33.0",
                             image_id=VLLM_IMAGE_ID)  # fmt: skip
    inspect["Name"] = "/quantbench-vllm-awq-2"
    engine.containers[new_id] = FakeContainer(inspect, old.stats, old.logs)
    reason = containers.facts("vllm-awq").change_since(before)
    assert reason == (
        "container of vllm-awq was replaced (quantbench-vllm-awq-1 -> quantbench-vllm-awq-2)"
    )


@pytest.mark.parametrize("cgroup", [1, 2])
def test_stats_give_memory_without_page_cache(
    cgroup: int, containers: Containers, engine: FakeEngine
) -> None:
    engine.containers[VLLM_ID].stats = stats_json(
        VLLM_ID, cpu_ns=42_000_000_000, usage=9 * 1024**3, limit=128 * 1024**3, cgroup=cgroup
    )
    sample = containers.stats("vllm-awq")
    assert sample.cpu_total_ns == 42_000_000_000 and sample.online_cpus == 16
    assert sample.memory_used_bytes == 9 * 1024**3 - 512 * 1024**2, "usage - inactive file"
    assert sample.memory_limit_bytes == 128 * 1024**3
    stats_path = next(r for r in engine.requests if "/stats" in r)
    assert "one-shot=True" in stats_path and "stream=False" in stats_path


def test_stage_resources_from_samples() -> None:
    gib = 1024**3
    samples = [
        ContainerStats(100.0, 10_000_000_000, 16, 8 * gib, 64 * gib),  # before the stage
        ContainerStats(110.0, 12_000_000_000, 16, 9 * gib, 64 * gib),
        ContainerStats(120.0, 27_000_000_000, 16, 11 * gib, 64 * gib),
        ContainerStats(130.0, 42_000_000_000, 16, 10 * gib, 64 * gib),
    ]
    figures = stage_resources(samples, 105.0, 130.0)
    assert figures.cpu_cores_mean == pytest.approx(30 / 20), "30 CPU-seconds over 20 s"
    assert figures.memory_peak_bytes == 11 * gib
    assert figures.memory_mean_bytes == pytest.approx(10 * gib)
    empty = stage_resources(samples, 200.0, 210.0)
    assert (empty.cpu_cores_mean, empty.memory_mean_bytes, empty.memory_peak_bytes) == (
        None,
        None,
        None,
    )


def test_a_failing_containers_last_lines_land_in_logs(
    containers: Containers, engine: FakeEngine, tmp_path: Path
) -> None:
    token = "hf_" + "Zq8" * 12
    engine.containers[VLLM_ID].logs = [
        (1, b"INFO loading weights\n"),
        (2, b"INFO using api key sk-live-123456 for auth\n"),
        (1, f"ERROR 401 for token {token}\n".encode()),
        (2, b"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"),
    ]
    path = containers.save_logs("vllm-awq", tmp_path, lines=3, secrets=["sk-live-123456"])
    assert path == tmp_path / LOGS_DIR / "vllm-awq.log"
    text = path.read_text()
    assert "loading weights" not in text, "only the last 3 lines"
    lines = text.splitlines()
    assert len(lines) == 3 and all(line.startswith("2026-11-27T07:20:00") for line in lines)
    assert lines[-1].endswith("CUDA out of memory. Tried to allocate 2.00 GiB"), "stderr kept"
    assert "sk-live-123456" not in text and token not in text
    assert text.count("[redacted]") == 2


def test_logs_of_a_tty_container_are_read_raw(
    containers: Containers, engine: FakeEngine, tmp_path: Path
) -> None:
    engine.containers[EXL2_ID].logs = [(1, b"exllamav2 ready\n")]
    text = containers.save_logs("exllamav2", tmp_path).read_text()
    assert text.endswith("exllamav2 ready\n")


def test_a_service_without_a_container_names_the_project(containers: Containers) -> None:
    with pytest.raises(DockerUnavailable, match=r"compose service tgi-awq: no container in "
                       r"project quantbench"):  # fmt: skip
        containers.facts("tgi-awq")


def test_unreachable_docker_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(DockerUnavailable) as caught:
        Containers().facts("vllm-awq")
    message = str(caught.value)
    assert message.startswith("cannot reach the Docker Engine API (")
    assert "\n" not in message and "check DOCKER_HOST" in message
