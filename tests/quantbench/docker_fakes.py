"""A fake Docker Engine on a unix socket, for the real `docker` SDK to talk to.

It answers the calls quantbench/containers.py makes with the Engine API's own JSON shapes
(docs.docker.com/reference/api/engine/version/v1.47: ContainerSummary for
`GET /containers/json` with its `filters` query, ContainerInspectResponse, ImageInspect,
ContainerStatsResponse) and the multiplexed log stream of a container without a TTY (an
8-byte header per frame: stream type, three zero bytes, big-endian length; docker-py
`docker/utils/socket.py`, `frames_iter`). State is plain dicts the test mutates.
"""

from __future__ import annotations

import json
import socketserver
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

API_VERSION = "1.47"
ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass
class FakeContainer:
    inspect: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)
    logs: list[tuple[int, bytes]] = field(default_factory=list)  # (1 stdout | 2 stderr, line)


def container_json(
    cid: str, service: str, project: str = "quantbench", *, image: str, image_id: str,
    started_at: str = "2026-11-27T07:12:03.123456789Z", tty: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """An inspect document of a running compose container (the fields the API always has)."""
    return {
        "Id": cid,
        "Created": "2026-11-27T07:12:02.000000001Z",
        "Path": "/bin/sh",
        "Args": ["-c", "exec vllm serve"],
        "State": {
            "Status": "running",
            "Running": True,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": 4242,
            "ExitCode": 0,
            "Error": "",
            "StartedAt": started_at,
            "FinishedAt": ZERO_TIME,
            "Health": {"Status": "healthy", "FailingStreak": 0, "Log": []},
        },
        "Image": image_id,
        "Name": f"/{project}-{service}-1",
        "RestartCount": 0,
        "Driver": "overlay2",
        "Platform": "linux",
        "Config": {
            "Hostname": cid[:12],
            "Image": image,
            "Tty": tty,
            "Labels": {
                "com.docker.compose.project": project,
                "com.docker.compose.service": service,
                "com.docker.compose.container-number": "1",
            },
        },
        "HostConfig": {"RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}},
    }


def stats_json(cid: str, *, cpu_ns: int, usage: int, limit: int, cgroup: int = 2) -> dict[str, Any]:
    """A one-shot stats document (`precpu_stats` is zero with one-shot=true)."""
    inactive_key = "inactive_file" if cgroup == 2 else "total_inactive_file"
    return {
        "read": "2026-11-27T07:20:00.000000001Z",
        "preread": ZERO_TIME,
        "name": f"/{cid}",
        "id": cid,
        "pids_stats": {"current": 57, "limit": 4194304},
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": cpu_ns,
                "usage_in_kernelmode": cpu_ns // 10,
                "usage_in_usermode": cpu_ns - cpu_ns // 10,
            },
            "system_cpu_usage": 9_000_000_000_000,
            "online_cpus": 16,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
        "memory_stats": {
            "usage": usage,
            "stats": {inactive_key: 512 * 1024**2, "anon": usage // 2, "file": usage // 4},
            "limit": limit,
        },
    }


class FakeEngine:
    """Serves the Engine API on `socket_path` from a thread; `requests` lists the paths
    asked, so tests can check the SDK used the API and not something else."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.containers: dict[str, FakeContainer] = {}
        self.images: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                engine.requests.append(self.path)
                status, body, kind = engine.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Api-Version", API_VERSION)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def address_string(self) -> str:  # unix sockets have no client address
                return "unix"

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self._server = Server(str(socket_path), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> FakeEngine:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, raw_path: str) -> tuple[int, bytes, str]:
        url = urlparse(raw_path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        path = url.path
        if path.startswith("/v1."):
            path = "/" + path.split("/", 2)[2]
        parts = path.strip("/").split("/")
        if path == "/version":
            return self._json({"ApiVersion": API_VERSION, "Version": "27.3.1", "Os": "linux",
                               "MinAPIVersion": "1.24"})  # fmt: skip
        if path == "/containers/json":
            return self._json(self._summaries(query))
        if parts[0] == "containers" and len(parts) == 3:
            container = self.containers.get(parts[1])
            if container is None:
                return self._json({"message": f"No such container: {parts[1]}"}, 404)
            if parts[2] == "json":
                return self._json(container.inspect)
            if parts[2] == "stats":
                assert query.get("stream", "").lower() in ("0", "false"), query
                return self._json(container.stats)
            if parts[2] == "logs":
                return self._logs(container, query)
        if parts[0] == "images" and parts[-1] == "json":
            image = self.images.get("/".join(parts[1:-1]))
            if image is None:
                return self._json({"message": "No such image"}, 404)
            return self._json(image)
        return self._json({"message": f"page not found: {path}"}, 404)

    def _summaries(self, query: dict[str, str]) -> list[dict[str, Any]]:
        filters = json.loads(query.get("filters", "{}"))
        wanted = dict(item.split("=", 1) for item in filters.get("label", []))
        rows = []
        for cid, container in self.containers.items():
            inspect = container.inspect
            labels = inspect["Config"]["Labels"]
            if any(labels.get(key) != value for key, value in wanted.items()):
                continue
            running = inspect["State"]["Running"]
            if not running and query.get("all", "0") in ("0", "false", "False"):
                continue
            rows.append({
                "Id": cid, "Names": [inspect["Name"]], "Image": inspect["Config"]["Image"],
                "ImageID": inspect["Image"], "Command": "/bin/sh -c", "Created": 1795763522,
                "Labels": labels, "State": inspect["State"]["Status"], "Status": "Up 8 minutes",
            })  # fmt: skip
        return rows

    def _logs(self, container: FakeContainer, query: dict[str, str]) -> tuple[int, bytes, str]:
        tail = query.get("tail", "all")
        lines = container.logs if tail == "all" else container.logs[-int(tail) :]
        if query.get("timestamps") in ("1", "true", "True"):
            lines = [(s, b"2026-11-27T07:20:00.000000000Z " + line) for s, line in lines]
        if container.inspect["Config"]["Tty"]:
            return 200, b"".join(line for _, line in lines), "application/vnd.docker.raw-stream"
        frames = b"".join(struct.pack(">BxxxL", s, len(line)) + line for s, line in lines)
        return 200, frames, "application/vnd.docker.multiplexed-stream"

    @staticmethod
    def _json(data: Any, status: int = 200) -> tuple[int, bytes, str]:
        return status, json.dumps(data).encode(), "application/json"
