"""A real simulator process: the official `openai` client, timing accuracy, CLI exit codes."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import aiohttp
import httpx
import openai

from services.sim import SimSettings, serve
from services.sim.__main__ import build_parser, settings_from_args


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


def test_openai_client_streams_completions_with_usage(sim_url: str) -> None:
    client = _client(sim_url)
    [model] = [m.id for m in client.models.list()]
    chunks = list(
        client.completions.create(
            model=model,
            prompt="The quick brown fox",
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert len(texts) == 5 and all(t.startswith(" ") for t in texts)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 5)


def test_openai_client_streams_chat_with_usage(sim_url: str) -> None:
    client = _client(sim_url)
    stream = client.chat.completions.create(
        model="sim/llama-3.1-8b-instruct-awq",
        messages=[{"role": "user", "content": "Hello!"}],
        max_completion_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert (
        chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    )
    contents = [c.choices[0].delta.content for c in chunks[1:] if c.choices]
    assert len(contents) == 4
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 9 + 4
    reply = client.chat.completions.create(
        model="sim/llama-3.1-8b-instruct-awq",
        messages=[{"role": "user", "content": "Hello!"}],
        max_tokens=3,
    )
    assert reply.choices[0].finish_reason == "length" and reply.usage is not None
    assert reply.usage.completion_tokens == 3


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
        return time.perf_counter() - start


def test_fixed_timing_ttft_is_accurate(sim_url: str) -> None:
    ttfts = [_raw_ttft(sim_url) for _ in range(9)]
    assert abs(statistics.median(ttfts) - 0.050) < 0.002, ttfts


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
