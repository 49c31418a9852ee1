"""The Locust transport against a real simulator (each check in its own process: see
locust_transport_checks.py for why and for what each one asserts)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.procs import REPO_ROOT, start_sim, stop_sim


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    proc, url = start_sim("--port", "0", "--timing", "fixed", "--ttft-ms", "200", "--itl-ms", "20")
    yield url
    stop_sim(proc)


@pytest.mark.parametrize(
    "check", ["stamp", "stamp-headers", "tls", "yield", "yield-user", "deadline", "pool", "reuse"]
)
def test_locust_transport(sim_url: str, check: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.loadtest.locust_transport_checks", sim_url, check],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"passed {check}"
