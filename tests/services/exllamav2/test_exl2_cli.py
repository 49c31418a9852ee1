"""`python -m services.exllamav2`: bad input exits 2 in one line, `/health` 503 while loading,
a failed load exits 1; importing the HTTP layer never imports exllamav2 or torch."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

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


_ISOLATION = """
import importlib.abc, sys
seen = []
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("exllamav2", "torch", "flash_attn", "jinja2"):
            seen.append(name)
            raise ImportError(name)
        return None
sys.meta_path.insert(0, Block())
import services.exllamav2, services.exllamav2.app, services.exllamav2.simulated
import services.exllamav2.exl2_engine, services.exllamav2.__main__
from services.exllamav2.simulated import create_exllamav2_sim_app
from services.sim.config import SimSettings
create_exllamav2_sim_app(SimSettings(stack="exllamav2", quant="exl2"))
print(seen, [m for m in sys.modules if m.split(".")[0] in ("exllamav2", "torch")])
"""


def test_importing_the_http_layer_never_imports_exllamav2_or_torch() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _ISOLATION],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] []"
