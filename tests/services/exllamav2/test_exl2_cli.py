"""`python -m services.exllamav2`: bad input exits 2 in one line, `/health` 503 while loading,
a failed load exits 1 (importing without exllamav2: test_exl2_image_imports.py)."""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.machinery
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from services.exllamav2 import Exl2Engine
from services.exllamav2.__main__ import build_parser, config_from_args, serve
from tests.procs import REPO_ROOT
from tests.services.exllamav2.conftest import FakeEngine


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "services.exllamav2", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    model = str(tmp_path)
    cases = [
        (),  # --model-dir is required
        ("--model-dir", model, "--cache-mode", "Q3"),
        ("--model-dir", model, "--bogus"),
        ("--model-dir", str(tmp_path / "missing")),
        ("--model-dir", model, "--max-batch-size", "1000"),
        ("--model-dir", model, "--api-key-env", "QB_TEST_KEY_THAT_IS_NOT_SET"),
    ]
    for args in cases:
        done = _run(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr


def test_a_failed_load_exits_1_in_one_line(tmp_path: Path) -> None:
    done = _run("--model-dir", str(tmp_path), "--port", "0")  # no exllamav2 here, no model there
    assert done.returncode == 1, done.stderr
    assert "model load failed" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout.startswith("quantbench-exllamav2 listening http://127.0.0.1:")


def test_flags_map_onto_the_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--model-dir", str(tmp_path), "--cache-mode", "Q4", "--max-seq-len", "8192"]
    )
    config = config_from_args(args)
    assert (config.host, config.port) == ("127.0.0.1", 8000), "loopback by default"
    assert (config.engine.cache_mode, config.engine.max_seq_len) == ("Q4", 8192)
    assert config.engine.name == tmp_path.name


def test_serve_answers_503_while_loading_then_200(tmp_path: Path) -> None:
    async def main() -> tuple[list[int], int]:
        gate, ready, stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
        urls: list[str] = []

        def on_ready(url: str) -> None:
            urls.append(url)
            ready.set()

        args = build_parser().parse_args(["--model-dir", str(tmp_path), "--port", "0"])
        engine = FakeEngine(loaded=False, load_gate=gate)
        task = asyncio.create_task(serve(config_from_args(args), engine, ready=on_ready, stop=stop))
        await asyncio.wait_for(ready.wait(), 10)
        statuses = []
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{urls[0]}/health") as resp:
                statuses.append(resp.status)
            async with session.get(f"{urls[0]}/metrics") as resp:
                assert resp.status == 200 and "exllamav2:num_requests_running" in await resp.text()
            async with session.get(f"{urls[0]}/info") as resp:
                assert (await resp.json())["loaded"] is False
            gate.set()
            for _ in range(500):
                async with session.get(f"{urls[0]}/health") as resp:
                    if resp.status == 200:
                        statuses.append(resp.status)
                        break
                await asyncio.sleep(0.01)
        stop.set()
        return statuses, await asyncio.wait_for(task, 10)

    assert asyncio.run(main()) == ([503, 200], 0)


def test_serve_returns_1_when_the_engine_fails_to_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(["--model-dir", str(tmp_path), "--port", "0"])
    engine = FakeEngine(loaded=False, load_error=RuntimeError("CUDA out of memory"))
    code: Any = asyncio.run(serve(config_from_args(args), engine, ready=lambda _: None))
    assert code == 1
    assert capsys.readouterr().err.strip().endswith("model load failed: CUDA out of memory")


class _BlockingImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import exllamav2` that hangs until released (its JIT build), then fails."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name.split(".")[0] != "exllamav2":
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        self.started.set()
        self.release.wait(30)
        raise ImportError("fake exllamav2: released")


def test_importing_exllamav2_does_not_block_health_and_metrics(tmp_path: Path) -> None:
    """The first `import exllamav2` compiles its CUDA extension for minutes: it must happen
    off the event loop, so /health (503) and /metrics answer meanwhile. The probes run in a
    thread of their own, so a blocked loop shows as their timeouts."""
    blocker = _BlockingImport()
    urls: list[str] = []
    statuses: list[int | str] = []

    def probe() -> None:
        try:
            if blocker.started.wait(10):
                for path in ("/health", "/metrics", "/version"):
                    try:
                        statuses.append(httpx.get(urls[0] + path, timeout=3).status_code)
                    except httpx.TimeoutException:
                        statuses.append("timeout")
        finally:
            blocker.release.set()

    async def main() -> int:
        args = build_parser().parse_args(["--model-dir", str(tmp_path), "--port", "0"])
        config = config_from_args(args)
        prober = threading.Thread(target=probe, daemon=True)
        code = await serve(
            config,
            Exl2Engine(config.engine),
            ready=lambda url: (urls.append(url), prober.start()),  # type: ignore[func-returns-value]
        )
        prober.join(10)
        return code

    sys.meta_path.insert(0, blocker)
    try:
        code = asyncio.run(main())
    finally:
        blocker.release.set()
        sys.meta_path.remove(blocker)
        for name in [m for m in sys.modules if m.split(".")[0] == "exllamav2"]:
            del sys.modules[name]
    assert statuses == [503, 200, 200]
    assert code == 1, "the (fake) import failed once released: a failed load"
