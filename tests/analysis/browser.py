"""Open a page in Debian's headless Chromium, as a reader would, and report what it loaded.

Driven over the DevTools protocol (aiohttp's WebSocket client, no extra dependency): every
request the *page* makes is recorded (Chromium's own background traffic is not the page's),
and the DOM is read after the load event: title, headings, and whether each image decoded.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["CHROMIUM", "PageLoad", "load_page"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags of /work/.library/env/machines/python.md: headless as root, and no background
# networking, so nothing but the page talks (and a closed network refuses nothing).
_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-port=0", "--window-size=1280,2000",
]  # fmt: skip
_DOM = """JSON.stringify({
  title: document.title,
  headings: [...document.querySelectorAll('h2')].map(e => e.textContent),
  images: [...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0]),
  tables: document.querySelectorAll('table').length,
})"""


@dataclass(frozen=True)
class PageLoad:
    requested: list[str]  # every URL the page asked for (data: URLs shortened)
    title: str
    headings: list[str]
    images: list[tuple[str, bool]]  # (alt text, decoded)
    tables: int
    screenshot: bytes


def _port(profile: Path, deadline: float) -> int:
    active = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if active.exists() and active.read_text().strip():
            return int(active.read_text().splitlines()[0])
        time.sleep(0.05)
    raise TimeoutError("Chromium did not open its DevTools port")


class _Session:
    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.events: list[dict[str, Any]] = []
        self._next = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        number = self._next
        await self.socket.send_json({"id": number, "method": method, "params": params})
        while True:
            message = json.loads((await self.socket.receive()).data)
            if message.get("id") == number:
                return dict(message.get("result", {}))
            self.events.append(message)

    async def wait_for(self, method: str) -> None:
        if any(e.get("method") == method for e in self.events):
            return
        while True:
            message = json.loads((await self.socket.receive()).data)
            self.events.append(message)
            if message.get("method") == method:
                return


async def _drive(port: int, url: str, timeout_s: float) -> PageLoad:
    import base64

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
            pages = [t for t in await answer.json() if t.get("type") == "page"]
        async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            session = _Session(ws)
            await session.call("Network.enable")
            await session.call("Page.enable")
            await session.call("Page.navigate", url=url)
            await asyncio.wait_for(session.wait_for("Page.loadEventFired"), timeout_s)
            dom = await session.call("Runtime.evaluate", expression=_DOM, returnByValue=True)
            shot = await session.call("Page.captureScreenshot", format="png")
    found = json.loads(dom["result"]["value"])
    requested = [
        str(e["params"]["request"]["url"])[:64]
        for e in session.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    return PageLoad(
        requested,
        found["title"],
        found["headings"],
        [(alt, bool(ok)) for alt, ok in found["images"]],
        int(found["tables"]),
        base64.b64decode(shot["data"]),
    )


def load_page(page: Path, profile: Path, timeout_s: float = 60.0) -> PageLoad:
    """Load `page` (a local file) in a fresh headless Chromium and read what it shows."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(
            "Debian's chromium is missing: `apt-get install chromium` (`make test` does it as root)"
        )
    profile.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port = _port(profile, time.monotonic() + timeout_s)
        return asyncio.run(_drive(port, page.resolve().as_uri(), timeout_s))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
