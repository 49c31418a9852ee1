"""Command line of the ExLlamaV2 server: `python -m services.exllamav2 --model-dir DIR [...]`.

The port opens at once with `/health` answering 503 while the model loads in the background,
so a compose healthcheck can wait for 200. Exit codes: 0 clean stop, 1 load failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from services.exllamav2.app import create_app
from services.exllamav2.config import Exl2ConfigError, ServerConfig, resolve_api_key
from services.exllamav2.engine import Engine
from services.exllamav2.exl2_engine import Exl2Engine

__all__ = ["build_parser", "config_from_args", "main", "serve"]

_NAME = "quantbench-exllamav2"
_SHUTDOWN_TIMEOUT_S = 2.0
_log = logging.getLogger("services.exllamav2")
_ENGINE_FLAGS = (
    "model_dir", "served_model_name", "max_seq_len", "cache_size", "gpu_memory_utilization",
    "cache_mode", "max_batch_size", "chunk_size",
)  # fmt: skip


def _cache_size(text: str) -> int | None:
    """`--cache-size N` or `auto` (compose passes `${EXL2_CACHE_SIZE:-auto}`)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of tokens or 'auto'") from None


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag prints one line (not the usage block) and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="python -m services.exllamav2",
        description="OpenAI-compatible ExLlamaV2 server with Prometheus metrics (needs a GPU).",
    )
    add = parser.add_argument
    add("--model-dir", required=True, help="EXL2 or GPTQ model directory (config.json, weights)")
    add("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    add("--port", type=int, default=8000, help="port to bind; 0 lets the OS pick (default: 8000)")
    add("--max-seq-len", type=int, default=None, help="context length (default: the model's)")
    add(
        "--cache-size",
        type=_cache_size,
        default=None,
        metavar="N|auto",
        help="KV cache tokens shared by all running requests, a multiple of 256; auto (the "
        "default): as many as free VRAM holds within --gpu-memory-utilization, on the first GPU",
    )
    add(
        "--gpu-memory-utilization",
        type=float,
        default=0.9,
        help="fraction of the GPU the process may use, weights and auto-sized cache (0.9)",
    )
    add("--cache-mode", default="FP16", choices=("FP16", "Q8", "Q6", "Q4"), help="KV precision")
    add("--max-batch-size", type=int, default=None, help="max concurrent jobs (default: auto)")
    add("--chunk-size", type=int, default=2048, help="prefill chunk in tokens, x256 (2048)")
    add("--served-model-name", default=None, help="name clients send (default: directory name)")
    add("--api-key-env", default=None, help="environment variable holding the API key")
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Validate parsed options into a `ServerConfig`; raises pydantic's `ValidationError`."""
    return ServerConfig.model_validate(
        {
            "host": args.host,
            "port": args.port,
            "app": {"api_key_env": args.api_key_env},
            "engine": {name: getattr(args, name) for name in _ENGINE_FLAGS},
        }
    )


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if p not in ("app", "engine")]
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"--{loc[-1].replace('_', '-')}: {message}" if loc else message)
    return "; ".join(parts)


def _announce(url: str) -> None:
    sys.stdout.write(f"{_NAME} listening {url} (loading the model; /health is 503 until ready)\n")
    sys.stdout.flush()


async def serve(
    config: ServerConfig,
    engine: Engine | None = None,
    *,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Listen, load the engine in the background, serve until `stop` (or SIGTERM/SIGINT).

    Returns 0 after a clean stop and 1 if loading failed (one line on stderr).
    """
    engine = engine or Exl2Engine(config.engine)
    app = create_app(engine, config.app, CollectorRegistry())
    runner = web.AppRunner(
        app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
    )
    handle_signals = stop is None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals: list[signal.Signals] = []
    tasks: list[asyncio.Task[None]] = []
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = runner.addresses[0][1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        (ready or _announce)(f"http://{host}:{port}")
        for sig in (signal.SIGTERM, signal.SIGINT) if handle_signals else ():
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not main thread
                loop.add_signal_handler(sig, stop.set)
                signals.append(sig)
        load = asyncio.create_task(engine.load())
        stopped = asyncio.create_task(_wait(stop))
        tasks += [load, stopped]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if load.done() and load.exception() is not None:
            print(f"{_NAME}: error: model load failed: {load.exception()}", file=sys.stderr)
            return 1
        if load.done():
            _log.info("model %s loaded (%s)", engine.model_name, engine.engine_version)
        await stopped
        return 0
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and serve; see the module docstring for exit codes."""
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        resolve_api_key(config.app, os.environ)  # fail here, in one line, not mid-startup
        engine = Exl2Engine(config.engine)
    except ValidationError as exc:
        message = f"invalid settings: {_one_line(exc)}"
    except Exl2ConfigError as exc:
        message = str(exc)
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        try:
            return asyncio.run(serve(config, engine))
        except KeyboardInterrupt:
            return 0
        except OSError as exc:  # e.g. the port is taken
            message = f"cannot serve: {exc}"
    print(f"{_NAME}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
