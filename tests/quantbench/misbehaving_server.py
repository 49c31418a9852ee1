"""A small OpenAI-style server that misbehaves on purpose, for reliability tests.

`python -m tests.quantbench.misbehaving_server [--key-env VAR] [--echo-rate R] [--html]`
prints `quantbench-sim ready URL` (as the simulator does) once listening on 127.0.0.1:

- `--key-env VAR`: every route wants `Authorization: Bearer $VAR`, else HTTP 401 (JSON);
- `--echo-rate R`: a share R of chat requests (every 1/R-th, counted) fails with HTTP 503
  whose body echoes the request's Authorization header, as careless proxies do;
- `--html`: every route answers an HTML 404 page, as a wrong URL behind nginx does.

Otherwise chat completions stream four tokens and `[DONE]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from aiohttp import web

MODEL = "misbehaving/model"
_HTML_404 = (
    "<!DOCTYPE html>\n<html>\n<head><title>404 Not Found</title></head>\n<body>\n"
    "<center><h1>404 Not Found</h1></center>\n<hr><center>nginx/1.25.3</center>\n"
    "</body>\n</html>\n"
)


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "error", "code": status}}
    return web.json_response(body, status=status)


def build_app(key: str | None, echo_rate: float, html: bool) -> web.Application:
    seen = {"chat": 0}

    @web.middleware
    async def gate(request: web.Request, handler: object) -> web.StreamResponse:
        if html:
            return web.Response(status=404, text=_HTML_404, content_type="text/html")
        if key is not None and request.headers.get("Authorization") != f"Bearer {key}":
            return _error(401, "Invalid API key: pass your key as a Bearer token")
        return await handler(request)  # type: ignore[operator]

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        seen["chat"] += 1
        if echo_rate and seen["chat"] % round(1 / echo_rate) == 0:
            header = request.headers.get("Authorization", "")
            return _error(503, f"upstream busy; request had Authorization: {header}")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in ("one", "two", "three", "four"):
            chunk = {"object": "chat.completion.chunk", "model": MODEL,
                     "choices": [{"index": 0, "delta": {"content": f" {word}"}}]}  # fmt: skip
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(0.002)
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application(middlewares=[gate])
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def _serve(app: web.Application) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"quantbench-sim ready http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.quantbench.misbehaving_server")
    parser.add_argument("--key-env")
    parser.add_argument("--echo-rate", type=float, default=0.0)
    parser.add_argument("--html", action="store_true")
    args = parser.parse_args()
    key = os.environ[args.key_env] if args.key_env else None
    try:
        asyncio.run(_serve(build_app(key, args.echo_rate, args.html)))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
