"""`quantbench doctor [bench.yaml]`: can a run start on this host? A table of checks, each
failure with its fix, before anyone spends two hours on a sweep.

Facts are gathered once (quantbench/hostfacts.py for Docker, GPUs and images; the compose file
as compose renders it; quantbench/doctor_targets.py for `url:` targets) and judged by the small
pure functions of quantbench/doctor_checks.py. Every reach into the host goes through `Host`,
which tests replace. Exit 0 when a run can start, 1 when a check failed, 2 on bad input.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from quantbench.compose import ComposeProject, Runner
from quantbench.config import BenchConfig, load_config
from quantbench.doctor_checks import (
    Check,
    Plan,
    PlannedService,
    check_arch,
    check_compose,
    check_disk,
    check_docker,
    check_driver,
    check_gpu,
    check_gpus,
    check_limits_equal,
    check_ports,
    check_secret,
    check_sharing,
    check_toolkit,
    image_needs,
)
from quantbench.doctor_targets import (
    Context,
    HttpProber,
    Prober,
    compose_context,
    limits_finding,
)
from quantbench.errors import ConfigError, HarnessError
from quantbench.hostfacts import (
    DockerFacts,
    GpuFacts,
    docker_facts,
    gpu_facts,
    image_facts,
    port_free,
    toolkit_hook,
)

__all__ = ["Check", "Host", "Plan", "PlannedService", "add_parser", "diagnose", "run_doctor"]


def _disk_free(path: str) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


@dataclass
class Host:
    """Everything the doctor may touch on this machine; tests replace any part."""

    runner: Runner = subprocess.run
    docker: str = "docker"
    nvidia_smi: str = "nvidia-smi"
    which: Callable[..., str | None] = shutil.which
    port_free: Callable[[str, int], bool] = port_free
    disk_free: Callable[[str], int | None] = _disk_free
    prober: Prober = field(default_factory=HttpProber)
    probe_timeout_s: float = 20.0


# ---------------------------------------------------------------- the plan


def _flags(command: Sequence[Any]) -> dict[str, str]:
    return dict(
        str(arg).split("=", 1) for arg in command if str(arg).startswith("--") and "=" in str(arg)
    )


def _planned(project: ComposeProject, name: str, gpu: str | None, running: bool) -> PlannedService:
    spec = project.service_config(name)
    labels = spec.get("labels") or {}
    command = [str(arg) for arg in spec.get("command") or []]
    flags = _flags(command)
    dockerfile = None
    build = spec.get("build")
    if build:
        inline = build.get("dockerfile_inline")
        path = Path(build.get("context", ".")) / build.get("dockerfile", "Dockerfile")
        try:
            text = inline or path.read_text()
            dockerfile = (text, "(inline)" if inline else str(path))
        except OSError:
            dockerfile = None
    devices = spec.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    ids = [str(i) for d in devices or [] for i in d.get("device_ids") or []]
    model = flags.get("--model-id") or next(
        (arg for arg in command if not arg.startswith("-")), None
    )
    if name == "exllamav2":
        model = flags.get("--model-dir")
    cache = next(
        (v["source"] for v in spec.get("volumes") or [] if v.get("type") == "bind"
         and v.get("target") in ("/root/.cache/huggingface", "/data", "/models")),
        None,
    )  # fmt: skip
    return PlannedService(
        name=name,
        stack=labels.get("io.quantbench.stack"),
        quant=labels.get("io.quantbench.quant"),
        image=spec.get("image"),
        dockerfile=dockerfile,
        gpu=(gpu if gpu is not None else ids[0]) if ids else None,
        flags=flags,
        ports=tuple(
            (str(p.get("host_ip") or "0.0.0.0"), int(p["published"]))
            for p in spec.get("ports") or []
            if p.get("published")
        ),
        secrets=tuple(str(s.get("source")) for s in spec.get("secrets") or []),
        model=model if spec.get("deploy") else None,
        running=running,
        cache_path=cache,
    )


def build_plan(
    project: ComposeProject,
    config: BenchConfig | None,
    profiles: Sequence[str],
    running: Callable[[str], bool],
) -> Plan:
    """The services a run would start: a config's compose targets (one at a time, on the
    solo GPU), the services of `profiles` (together), or every GPU service (one at a time)."""
    services = project.config().get("services", {})
    if profiles:
        known = sorted({p for spec in services.values() for p in spec.get("profiles") or []})
        unknown = [p for p in profiles if p not in known]
        if unknown:
            raise ConfigError(
                f"--profile {unknown[0]}: no such profile in {project.compose_file} "
                f"(have: {', '.join(known)})"
            )
        names = [
            n for n, s in services.items()
            if not s.get("profiles") or set(s["profiles"]) & set(profiles)
        ]  # fmt: skip
        planned = [_planned(project, n, None, running(n)) for n in sorted(names)]
        label = "--profile " + " --profile ".join(profiles)
        together = True
    else:
        if config is not None:
            names = list(dict.fromkeys(t.compose for t in config.targets if t.compose))
            label = "the compose targets of the config"
        else:
            names = [
                n for n, s in services.items()
                if s.get("deploy", {}).get("resources", {}).get("reservations")
            ]  # fmt: skip
            label = "every GPU service of the compose file"
        for name in names:
            project.service_config(name)  # an unknown service is one clear line
        solo = project.solo_gpu()
        planned = []
        for name in names:
            is_running = running(name)
            planned.append(_planned(project, name, None if is_running else solo, is_running))
        together = False
    secrets = project.config().get("secrets") or {}
    used = {name for service in planned for name in service.secrets}
    files = {name: str(secrets[name].get("file")) for name in sorted(used) if name in secrets}
    return Plan(tuple(planned), together, label, files)


# ---------------------------------------------------------------- putting it together


def _target_checks(config: BenchConfig, plan: Plan, host: Host) -> Iterable[Check]:
    by_name = {service.name: service for service in plan.services}
    for target in config.targets:
        name = f"target {target.name}"
        if target.sim is not None:
            yield Check(name, "ok", "a simulator: nothing to check on this host")
            continue
        context: Context | None = None
        if target.compose is not None:
            service = by_name.get(target.compose)
            if service is None:
                yield Check(f"{name}: limits", "skip", "the compose file was not read")
                continue
            context = compose_context(service.stack, service.flags)
        else:
            url = str(target.url).rstrip("/")
            problem = host.prober.generating(
                target, url, config.workload.endpoint, host.probe_timeout_s
            )
            if problem:
                yield Check(
                    name,
                    "fail",
                    f"{url} does not generate: {problem}",
                    "start the server (and wait until `/health` answers 200), or fix `url`, "
                    "`model` or `api_key_env` in the config",
                )
                continue
            yield Check(name, "ok", f"{url} completed a probe generation")
            context = host.prober.context(url, target.api, target.api_key_env)
        if context is None:
            yield Check(f"{name}: limits", "skip", "the server does not say its context")
            continue
        status, finding, fix = limits_finding(config.workload, context)
        yield Check(f"{name}: limits", status, finding, fix)  # type: ignore[arg-type]


def diagnose(
    config: BenchConfig | None,
    compose_file: Path,
    profiles: Sequence[str],
    host: Host,
) -> list[Check]:
    """Every check, in the order a user fixes them: host, then services, then targets."""
    docker = docker_facts(host.docker, host.runner)
    gpus = gpu_facts(host.nvidia_smi, host.runner)
    checks = [
        check_docker(docker),
        check_compose(docker),
        check_toolkit(docker, toolkit_hook(host.which)),
        check_gpus(gpus),
    ]
    needs_compose = config is None or any(t.compose for t in config.targets) or profiles
    if not needs_compose:  # simulators and running servers: this host needs no Docker or GPU
        checks = [_not_needed(check) for check in checks]
    plan = Plan((), False, "no compose service")
    if needs_compose and not compose_file.is_file():
        checks.append(
            Check(
                "compose services",
                "skip",
                f"no {compose_file}",
                "run from the quantbench checkout, or give --compose-file",
            )
        )
    elif needs_compose:
        project = ComposeProject(compose_file, docker=host.docker, runner=host.runner)
        if docker.compose is None:
            checks.append(
                Check(
                    "compose services",
                    "skip",
                    f"{compose_file} not read: no Docker Compose (see above)",
                )
            )
        else:
            try:
                project.config()
            except HarnessError as exc:
                raise ConfigError(str(exc)) from exc

            def running(service: str) -> bool:
                if docker.server is None:
                    return False
                try:
                    return project.is_running(service)
                except HarnessError:
                    return False

            plan = build_plan(project, config, profiles, running)
            checks.extend(_service_checks(plan, docker, gpus, host))
    if config is not None:
        checks.extend(_target_checks(config, plan, host))
    return checks


def _not_needed(check: Check) -> Check:
    """A host check that a config without `compose:` targets does not depend on: a failure
    is shown, but cannot stop the run."""
    if check.status != "fail":
        return check
    return Check(check.name, "skip", f"{check.detail} (not needed: no `compose:` target)")


def _service_checks(plan: Plan, docker: DockerFacts, gpus: GpuFacts, host: Host) -> list[Check]:
    images = (
        image_facts(host.docker, [s.image for s in plan.services if s.image], host.runner)
        if docker.server
        else {}
    )
    checks = []
    for service in plan.services:
        if service.gpu is None:
            continue
        needs = image_needs(service, images)
        checks.append(check_driver(service, needs, gpus))
        arch = check_arch(service, needs, gpus)
        if arch is not None:
            checks.append(arch)
        checks.append(check_gpu(service, gpus))
    checks.append(check_sharing(plan))
    limits = check_limits_equal(plan)
    if limits is not None:
        checks.append(limits)
    checks.extend(check_ports(plan, host.port_free))
    for name, path in plan.secret_files.items():
        checks.append(check_secret(name, path, needs_value=name == "grafana_admin_password"))
    checks.append(check_disk(plan, docker, images, host.disk_free))
    return checks


_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def render(checks: Sequence[Check], console: Console) -> None:
    table = Table(title="quantbench doctor", title_justify="left", expand=False)
    table.add_column("check", overflow="fold")
    table.add_column("", no_wrap=True)
    table.add_column("finding", overflow="fold")
    table.add_column("fix", overflow="fold")
    for check in checks:
        status = check.status.upper() if check.status in ("warn", "fail") else check.status
        table.add_row(check.name, f"[{_STYLE[check.status]}]{status}[/]", check.detail, check.fix)
    if not console.is_terminal:  # a file or CI log: rich would wrap at 80 columns
        console = Console(file=console.file, width=max(console.width, 160), highlight=False)
    console.print(table)
    failed = sum(check.status == "fail" for check in checks)
    warned = sum(check.status == "warn" for check in checks)
    verdict = (
        "a run can start"
        if not failed
        else "a run cannot start: fix the failures above, then rerun `quantbench doctor`"
    )
    console.print(f"{len(checks)} checks, {failed} failed, {warned} warnings: {verdict}")


_HELP = """Check this host (and a bench.yaml) before a run: Docker and Compose versions, the NVIDIA
Container Toolkit, the driver against what each image needs, the GPU ids and the memory each
service claims, GPUs shared within a profile, host ports, secret files, disk for images and
models, `url:` targets reachable and generating, and the workload's lengths within each
target's context. Prints a table with a fix for every failure.

examples:
  quantbench doctor                     every GPU service of ./docker-compose.yml, one at a time
  quantbench doctor bench.yaml          the targets of a config, as `quantbench run` starts them
  quantbench doctor --profile vllm      a profile started at once (one GPU per service)

exit codes: 0 a run can start (warnings allowed); 1 a check failed; 2 bad input.
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check this host and a config before a run (preflight)",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument("config", type=Path, nargs="?", help="bench.yaml to check (optional)")
    doctor.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="NAME",
        help="check the services of this compose profile as started together (repeatable)",
    )
    doctor.add_argument(
        "--compose-file",
        type=Path,
        default=None,
        help="compose file (default: the config's compose_file, else ./docker-compose.yml)",
    )


def run_doctor(args: argparse.Namespace, console: Console, host: Host | None = None) -> int:
    """Check, print the table, return 0 (a run can start) or 1; bad input raises ConfigError."""
    config = load_config(args.config) if args.config is not None else None
    compose_file = args.compose_file or (
        config.compose_file if config is not None else Path("docker-compose.yml")
    )
    named = (
        args.compose_file is not None
        or args.profile
        or (config is not None and any(t.compose for t in config.targets))
    )
    if named and not compose_file.is_file():
        raise ConfigError(f"{compose_file}: no such compose file (give --compose-file)")
    checks = diagnose(config, compose_file.resolve(), args.profile, host or Host())
    render(checks, console)
    return 1 if any(check.status == "fail" for check in checks) else 0
