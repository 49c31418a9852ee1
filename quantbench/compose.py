"""Docker Compose orchestration for targets that say `compose: <service>`.

Runs `docker compose` as a subprocess (the runner is injectable, so tests use a fake `docker`),
brings one service up and waits until its healthcheck passes, finds its published URL, and
reads what run.json records: the image digest and the resolved flags (secret values never
included). Every Docker failure becomes one `HarnessError` line naming the service and the fix.

A service started here runs alone, so it is pinned to the one GPU `GPU_ID` names (default 0,
read through the file's `x-quantbench.solo-gpu`); the per-service `*_GPU` ids are for starting
a whole profile at once (docs/gpu-hosts.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

from quantbench.cuda import driver_for_cuda
from quantbench.errors import HarnessError, QuantbenchError

__all__ = ["ComposeProject", "ImageInfo", "Runner", "redact_args"]

_PULL_ALLOWANCE_S = 3600.0  # `up` may pull a ~10 GB image before --wait-timeout starts
_SHORT_TIMEOUT_S = 120.0
_SECRET_FLAG = re.compile(r"^--?(api[-_]?key|hf[-_]token|token|password|secret)(=|$)", re.I)
_REDACTED = "<redacted>"
_SUBCOMMANDS = ("config", "up", "stop", "rm", "ps", "port", "images", "logs", "inspect")


class Runner(Protocol):
    """The subset of `subprocess.run` that ComposeProject uses."""

    def __call__(
        self,
        args: Sequence[str],
        *,
        capture_output: bool,
        text: bool,
        env: Mapping[str, str] | None,
        timeout: float | None,
        check: bool,
    ) -> subprocess.CompletedProcess[str]: ...


@dataclass(frozen=True)
class ImageInfo:
    """Which image a service ran: `repo_digest` is None for images built locally."""

    image: str
    image_id: str
    repo_digest: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# (pattern in Docker's stderr, what it means and what to do); first match wins.
_FAILURES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.I), advice)
    for pattern, advice in (
        (
            r"permission denied while trying to connect to the docker daemon",
            "this user may not use Docker (add it to the `docker` group, or run as root)",
        ),
        (
            r"cannot connect to the docker daemon|is the docker daemon running",
            "no Docker engine is reachable (start it: `sudo systemctl start docker`; "
            "check DOCKER_HOST)",
        ),
        (
            # a CLI without the plugin may instead refuse `compose -f FILE` as its own flags
            r"'compose' is not a docker command|unknown command: docker compose|"
            r"unknown shorthand flag: [^\n]*\n+Usage:\s+docker \[OPTIONS\] COMMAND",
            "the Docker Compose v2 plugin is missing (install docker-compose-plugin >= 2.30)",
        ),
        (
            r"unknown flag: --wait|unknown flag: --format",
            "Docker Compose is too old (quantbench needs >= 2.30: `docker compose version`)",
        ),
        (
            r'could not select device driver "nvidia"|unknown or invalid runtime name: nvidia',
            "Docker cannot hand out a GPU (install the NVIDIA Container Toolkit, run "
            "`sudo nvidia-ctk runtime configure --runtime=docker` and restart Docker; "
            "without a GPU use the `sim` profile)",
        ),
        (
            # libnvidia-container refuses an image whose NVIDIA_REQUIRE_CUDA the driver cannot
            # meet: "requirement error: unsatisfied condition: cuda>=13.0, please update ..."
            r"unsatisfied condition: cuda>=(?P<cuda>\d+\.\d+)",
            "the host's NVIDIA driver is too old for its image, which needs CUDA {cuda} "
            "(upgrade the driver to >= {driver}, `nvidia-smi` shows the CUDA version it "
            "supports; or use an image built for an older CUDA, e.g. VLLM_IMAGE="
            "vllm/vllm-openai:v0.33.0-cu129 in .env for vLLM: docs/gpu-hosts.md; "
            "`quantbench doctor` checks this before a run)",
        ),
        (
            r"nvidia-container-cli: (?P<detail>[^\n]*)",
            "the NVIDIA runtime could not attach the GPU ({detail}; check GPU_ID and the "
            "*_GPU ids in .env against `nvidia-smi -L`)",
        ),
        (
            r"pull access denied|manifest unknown|manifest for \S+ not found|"
            r"repository does not exist|no such image",
            "its image cannot be pulled ({line}; check the tag in the compose file, "
            "`docker login` for a private registry, or `docker compose build` for a local image)",
        ),
        (
            r'(?:Get|Head) "https?://[^"/]+/v2/[^"]*": (?:dial tcp|net/http|proxyconnect)',
            "its image cannot be pulled: the registry is unreachable ({line}; check the "
            "network or proxy, or `docker load` the image)",
        ),
        (
            r"port is already allocated|address already in use",
            "its host port is taken ({line}; change the *_PORT value in .env or stop what uses it)",
        ),
        (
            r"secret file (?P<detail>\S+) does not exist",
            "its secret file {detail} is missing (create it; an empty hf_token or api_key file "
            "means none: docs/gpu-hosts.md)",
        ),
        (
            r"bind source path does not exist: (?P<detail>\S+)",
            "a file it mounts is missing: {detail} (create the secret files: docs/gpu-hosts.md)",
        ),
        (
            r"application not healthy after (?P<detail>\S+)",
            "not healthy after {detail} (still downloading or loading the model? raise the "
            "timeout, or follow `docker compose logs -f {service}`)",
        ),
        (
            r"container \S+ is unhealthy|dependency failed to start|container \S+ exited",
            "it stopped or failed its healthcheck ({line}; see `docker compose logs {service}`: "
            "wrong model id or revision, missing HF token, out of GPU memory?)",
        ),
        (r"no such service: (?P<detail>\S+)", "the compose file has no service {detail}"),
    )
)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _line_at(text: str, index: int) -> str:
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    line = text[start : end if end >= 0 else len(text)].strip()
    return line.removeprefix("Error response from daemon: ").removeprefix("Error: ")


def _explain(stderr: str, service: str) -> str:
    """One line: what Docker's error means and what to do, or its last line if unknown."""
    for pattern, advice in _FAILURES:
        matches = list(pattern.finditer(stderr))  # the last: progress lines come first
        if matches:
            match = matches[-1]
            groups = match.groupdict()
            detail = (groups.get("detail") or "").strip()
            cuda = groups.get("cuda") or ""
            line = _line_at(stderr, match.start())
            return advice.format(
                detail=detail,
                line=line,
                service=service,
                cuda=cuda,
                driver=driver_for_cuda(cuda) or "the version NVIDIA lists for it",
            )
    return _last_line(stderr)


def redact_args(args: Sequence[str]) -> list[str]:
    """Command-line arguments with the values of key/token/password flags replaced."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            out.append(_REDACTED)
            hide_next = False
            continue
        match = _SECRET_FLAG.match(arg)
        if match and match.group(2) == "=":
            out.append(arg.split("=", 1)[0] + "=" + _REDACTED)
        else:
            out.append(arg)
            hide_next = bool(match)
    return out


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(item) for item in value]


class ComposeProject:
    """One compose file: bring its services up one at a time and describe them.

    `docker` is the Docker CLI to run (`docker compose ...`, `docker image inspect ...`);
    `env` is added to the environment of every command (e.g. the *_FILE secret paths);
    `runner` replaces `subprocess.run` (tests). `target` arguments only name the bench.yaml
    target in error messages.
    """

    def __init__(
        self,
        compose_file: Path,
        project_dir: Path | None = None,
        *,
        docker: str = "docker",
        env: Mapping[str, str] | None = None,
        env_file: Path | None = None,
        project_name: str | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.compose_file = Path(compose_file)
        self.project_dir = Path(project_dir) if project_dir else self.compose_file.parent
        self.docker = docker
        self.env = dict(env or {})
        self.env_file = env_file
        self.project_name = project_name
        self._runner: Runner = runner or subprocess.run
        self._config: dict[str, Any] | None = None
        self._alone: set[str] = set()  # services this project started pinned to the solo GPU

    # ------------------------------------------------------------------ commands
    def compose_command(self, *args: str, profile: str | None = None) -> list[str]:
        """The full `docker compose -f FILE --project-directory DIR [...] ARGS` argv."""
        argv = [self.docker, "compose", "-f", str(self.compose_file)]
        argv += ["--project-directory", str(self.project_dir)]
        if self.env_file is not None:
            argv += ["--env-file", str(self.env_file)]
        if self.project_name:
            argv += ["-p", self.project_name]
        if profile:
            argv += ["--profile", profile]
        return argv + list(args)

    def _service_command(self, service: str, *args: str, target: str | None = None) -> list[str]:
        return self.compose_command(*args, service, profile=self.profile_of(service, target))

    def _call(
        self, argv: list[str], timeout_s: float, extra_env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self._runner(
            argv,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env, **(extra_env or {})},
            timeout=timeout_s,
            check=False,
        )

    def _run(
        self,
        argv: list[str],
        action: str,
        timeout_s: float,
        service: str | None = None,
        target: str | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> str:
        """Run one Docker command: its stdout, or a HarnessError line saying what to do."""
        if service is None:
            who = str(self.compose_file)
        elif target:
            who = f"target {target} (compose service {service})"
        else:
            who = f"compose service {service}"
        try:
            done = self._call(argv, timeout_s, extra_env)
        except FileNotFoundError as exc:
            raise HarnessError(
                f"{who}: cannot {action}: `{self.docker}` not found (install Docker Engine with "
                f"the Compose plugin >= 2.30, or give quantbench the path of the docker binary)"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            verb = next((a for a in argv[1:] if a in _SUBCOMMANDS), "")
            raise HarnessError(
                f"{who}: cannot {action}: `{self.docker} {argv[1]} {verb}` did not finish "
                f"within {timeout_s:.0f} s"
            ) from exc
        if done.returncode != 0:
            stderr = (done.stderr or "").strip() or (done.stdout or "")
            raise HarnessError(f"{who}: cannot {action}: {_explain(stderr, service or '')}")
        return done.stdout or ""

    def _last_log_line(self, service: str) -> str | None:
        """Best effort: the service's last log line (often the cause of a failed start)."""
        argv = self._service_command(
            service, "logs", "--no-color", "--no-log-prefix", "--tail", "20"
        )
        try:
            done = self._call(argv, _SHORT_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError):
            return None
        lines = [line.strip() for line in (done.stdout or "").splitlines() if line.strip()]
        return lines[-1] if done.returncode == 0 and lines else None

    # ------------------------------------------------------------------ the file
    def config(self) -> dict[str, Any]:
        """`docker compose config --format json` over every profile (read once, cached)."""
        if self._config is None:
            argv = self.compose_command("config", "--format", "json", profile="*")
            out = self._run(argv, "read it", _SHORT_TIMEOUT_S)
            try:
                self._config = json.loads(out)
            except ValueError as exc:
                raise HarnessError(
                    f"{self.compose_file}: `docker compose config` did not print JSON"
                ) from exc
        return self._config

    def services(self) -> list[str]:
        return sorted(self.config().get("services", {}))

    def service_config(self, service: str, target: str | None = None) -> dict[str, Any]:
        """The service as compose resolved it (.env interpolated); unknown names list the known."""
        services = self.config().get("services", {})
        if service not in services:
            who = f"target {target}: " if target else ""
            raise HarnessError(
                f"{who}compose service {service!r} is not in {self.compose_file} "
                f"(have: {', '.join(sorted(services)) or 'none'})"
            )
        return dict(services[service])

    def solo_gpu(self) -> str:
        """The GPU a service started on its own runs on: `GPU_ID` (from the environment or
        .env, as compose reads it), default 0, rendered by the file's x-quantbench block."""
        block = self.config().get("x-quantbench") or {}
        return str(block.get("solo-gpu") or "0")

    def profile_of(self, service: str, target: str | None = None) -> str | None:
        """The first profile the service is in (its stack's), or None if it has none."""
        profiles = self.service_config(service, target).get("profiles") or []
        return str(profiles[0]) if profiles else None

    # ------------------------------------------------------------------ lifecycle
    def up(
        self, service: str, timeout_s: float, *, target: str | None = None, alone: bool = True
    ) -> None:
        """Start `service` and block until its healthcheck passes (`up -d --wait`).

        `alone`: it runs by itself, on the solo GPU (`GPU_ID`, default 0) whatever its own
        `*_GPU` id says, so one GPU is enough for every service. Otherwise (it is already
        running) it is left as it is: `--no-recreate` only waits for it to be healthy.
        The wait timeout starts after any image pull, so the subprocess gets an extra hour."""
        wait_s = max(int(timeout_s), 1)
        flags = ["-d", "--wait", "--wait-timeout", str(wait_s)]
        if not alone:
            flags.append("--no-recreate")
        argv = self._service_command(service, "up", *flags, target=target)
        extra_env = {"GPU_ID": self.solo_gpu()} if alone else None
        try:
            self._run(argv, "start", wait_s + _PULL_ALLOWANCE_S, service, target, extra_env)
        except HarnessError as exc:
            last = self._last_log_line(service)
            if last is None:
                raise
            raise HarnessError(f"{exc}; its last log line: {last[:300]}") from exc.__cause__
        if alone:
            self._alone.add(service)

    def stop(self, service: str, *, target: str | None = None) -> None:
        argv = self._service_command(service, "stop", target=target)
        self._run(argv, "stop", _SHORT_TIMEOUT_S, service, target)

    def down(self, service: str, *, target: str | None = None) -> None:
        """Stop and remove the service's containers; volumes and other services stay."""
        argv = self._service_command(service, "rm", "--stop", "--force", target=target)
        self._run(argv, "stop and remove", _SHORT_TIMEOUT_S, service, target)

    def is_running(self, service: str, *, target: str | None = None) -> bool:
        argv = self._service_command(
            service, "ps", "--format", "json", "--status", "running", target=target
        )
        return bool(_json_rows(self._run(argv, "list", _SHORT_TIMEOUT_S, service, target)))

    @contextmanager
    def running(
        self,
        service: str,
        timeout_s: float,
        *,
        target: str | None = None,
        on_failure: Callable[[QuantbenchError], QuantbenchError | None] | None = None,
    ) -> Iterator[str]:
        """The service up and healthy for the block; yields its URL. A service that was
        already running before is left running afterwards, anything started is removed.

        `on_failure` sees the error when the service fails to come up or the block fails,
        while its container still exists (e.g. to save its logs), and may return the error
        to raise instead (quantbench.telemetry.failure_logs)."""
        was_running = self.is_running(service, target=target)
        try:
            self.up(service, timeout_s, target=target, alone=not was_running)
        except HarnessError as exc:
            _raise_instead(on_failure, exc)
        try:
            yield self.published_url(service, target=target)
        except QuantbenchError as exc:
            _raise_instead(on_failure, exc)
        finally:
            if not was_running:
                self.down(service, target=target)

    # ------------------------------------------------------------------ facts
    def published_url(
        self, service: str, container_port: int | None = None, *, target: str | None = None
    ) -> str:
        """`http://HOST:PORT` on the host side of the service's first published port."""
        if container_port is None:
            ports = self.service_config(service, target).get("ports") or []
            if not ports:
                raise HarnessError(
                    f"compose service {service}: publishes no port (add "
                    f'`ports: ["127.0.0.1:HOST_PORT:CONTAINER_PORT"]` to it)'
                )
            container_port = int(ports[0]["target"])
        argv = self._service_command(service, "port", target=target)
        argv.append(str(container_port))
        out = self._run(argv, "find its port", _SHORT_TIMEOUT_S, service, target).strip()
        host, _, port = out.splitlines()[0].rpartition(":") if out else ("", "", "")
        if not port.isdigit():
            raise HarnessError(
                f"compose service {service}: port {container_port} is not published "
                f"(`docker compose port` printed {out!r}); is the service running?"
            )
        host = host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def image_digest(self, service: str, *, target: str | None = None) -> ImageInfo:
        """The image the service's container runs, with its registry digest when pulled."""
        argv = self._service_command(service, "images", "--format", "json", target=target)
        rows = _json_rows(self._run(argv, "list its image", _SHORT_TIMEOUT_S, service, target))
        if not rows:
            raise HarnessError(f"compose service {service}: has no container (not started?)")
        image_id = str(rows[0].get("ID", ""))
        repo, tag = str(rows[0].get("Repository", "")), str(rows[0].get("Tag", ""))
        inspect = [self.docker, "image", "inspect", "--format", "{{json .RepoDigests}}", image_id]
        out = self._run(inspect, "inspect its image", _SHORT_TIMEOUT_S, service, target)
        try:
            digests = json.loads(out or "[]") or []
        except ValueError:
            digests = []
        return ImageInfo(
            image=f"{repo}:{tag}" if tag else repo,
            image_id=image_id,
            repo_digest=str(digests[0]) if digests else None,
        )

    def resolved_config(self, service: str, *, target: str | None = None) -> dict[str, Any]:
        """What run.json records about the service as compose resolved it: image, flags,
        environment *names*, secret *names*, GPUs, ports, healthcheck. No secret value."""
        spec = self.service_config(service, target)
        reservations = spec.get("deploy", {}).get("resources", {}).get("reservations", {})
        devices = reservations.get("devices") or []
        gpus = [str(i) for d in devices for i in _as_list(d.get("device_ids"))] or [
            str(d["count"]) for d in devices if d.get("count") is not None
        ]
        if devices and service in self._alone:
            gpus = [self.solo_gpu()]
        build = spec.get("build")
        return {
            "service": service,
            "image": spec.get("image"),
            "build": {"dockerfile": build.get("dockerfile", "(inline)")} if build else None,
            "profiles": _as_list(spec.get("profiles")),
            "labels": dict(spec.get("labels") or {}),
            "entrypoint": redact_args(_as_list(spec.get("entrypoint"))),
            "command": redact_args(_as_list(spec.get("command"))),
            "environment": sorted(spec.get("environment") or {}),
            "secrets": sorted(str(s.get("source", "")) for s in spec.get("secrets") or []),
            "gpus": gpus,
            "ports": [
                {key: port.get(key) for key in ("host_ip", "published", "target")}
                for port in spec.get("ports") or []
            ],
            "healthcheck": spec.get("healthcheck"),
            "ipc": spec.get("ipc"),
            "shm_size": spec.get("shm_size"),
        }


def _raise_instead(
    on_failure: Callable[[QuantbenchError], QuantbenchError | None] | None, error: QuantbenchError
) -> NoReturn:
    """Raise what `on_failure` makes of `error`, or `error` itself."""
    replacement = on_failure(error) if on_failure is not None else None
    if replacement is None:
        raise error
    raise replacement from error


def _json_rows(text: str) -> list[dict[str, Any]]:
    """Compose prints a JSON array (images) or one JSON object per line (ps, >= 2.21)."""
    text = text.strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    if data is None:  # `images --format json` with no container prints `null`
        return []
    if isinstance(data, dict):
        return [data]
    return [row for row in data if isinstance(row, dict)]
