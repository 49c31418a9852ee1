"""A real simulator process: the official `openai` client, timing accuracy, CLI exit codes."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from services.sim import FixedEngine, SimSettings, serve
from services.sim.__main__ import build_parser, settings_from_args
from tests.services.openai_conformance import check_chat, check_completions


def test_openai_client_conformance(sim_url: str) -> None:
    check_completions(sim_url, "sim/llama-3.1-8b-instruct-awq", prompt_tokens=4)
    check_chat(sim_url, "sim/llama-3.1-8b-instruct-awq", prompt_tokens=9)


def _raw_ttft(url: str) -> float:
    """TTFT seen by a raw socket, so no client library's overhead is in the figure."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "x", "max_tokens": 2, "stream": True}).encode()
    head = (
        f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        start = time.perf_counter()
        sock.sendall(head + body)
        received = b""
        while b"data: {" not in received:
            chunk = sock.recv(65536)
            assert chunk, "stream ended before its first token"
            received += chunk
        ttft = time.perf_counter() - start
        while sock.recv(65536):  # read the stream to its end (Connection: close)
            pass
        return ttft


def test_fixed_timing_is_exact_in_the_simulators_own_log(sim_process: Any, tmp_path: Path) -> None:
    """The log's times are the simulated due times, so they are exact whatever the machine's
    load; a client can only see a token after it was due (the timer wakes at most
    `timer_slack_s` early), so its TTFT is bounded below, never checked against a real timer."""
    log = tmp_path / "sim.jsonl"
    _, url = sim_process("--timing", "fixed", "--ttft-ms", "50", "--itl-ms", "2",
                         "--request-log", str(log))  # fmt: skip
    ttfts = [_raw_ttft(url) for _ in range(5)]
    deadline = time.monotonic() + 10
    while len(log.read_text().splitlines()) < 5:  # logged once each answer is complete
        assert time.monotonic() < deadline, "the simulator never logged its requests"
        time.sleep(0.01)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    for entry in entries:
        assert entry["first_token"] - entry["arrival"] == pytest.approx(0.050, abs=1e-6)
        assert entry["last_token"] - entry["first_token"] == pytest.approx(0.002, abs=1e-6)
        assert entry["tokens_sent"] == 2 and min(entry["lateness_ms"]) >= -1.0
    assert min(ttfts) >= 0.050 - FixedEngine.timer_slack_s - 1e-4, ttfts


def test_sigterm_exits_cleanly(sim_process: Any) -> None:
    proc, url = sim_process("--quant", "gptq", "--gpu", "a100")
    assert httpx.get(f"{url}/health").status_code == 200
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and err == ""


def test_bad_input_is_one_line_and_exit_2() -> None:
    for args in (
        ["--quant", "exl2"],
        ["--port", "70000"],
        ["--timing", "fixed", "--ttft-ms", "-1"],
        ["--quant", "fp16", "--gpu", "l4", "--max-model-len", "40000"],  # KV holds 34,000
    ):
        done = subprocess.run(
            [sys.executable, "-m", "services.sim", *args],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr


def test_parser_helpers_build_settings() -> None:
    args = build_parser().parse_args(["--quant", "fp16", "--timing", "fixed", "--ttft-ms", "5"])
    settings = settings_from_args(args)
    assert (settings.quant, settings.timing, settings.ttft_ms) == ("fp16", "fixed", 5.0)
    assert settings.served_model_name == "sim/llama-3.1-8b-instruct-fp16"


def test_serve_in_process_with_ready_callback_and_stop_event() -> None:
    async def main() -> tuple[str, Any]:
        urls: list[str] = []
        ready, stop = asyncio.Event(), asyncio.Event()

        def on_ready(url: str) -> None:
            urls.append(url)
            ready.set()

        task = asyncio.create_task(serve(SimSettings(quant="fp16"), ready=on_ready, stop=stop))
        await asyncio.wait_for(ready.wait(), 10)
        async with aiohttp.ClientSession() as session, session.get(f"{urls[0]}/v1/models") as resp:
            models = await resp.json()
        stop.set()
        await asyncio.wait_for(task, 5)
        return urls[0], models

    url, models = asyncio.run(main())
    assert url.startswith("http://127.0.0.1:")
    assert models["data"][0]["id"] == "sim/llama-3.1-8b-instruct-fp16"
