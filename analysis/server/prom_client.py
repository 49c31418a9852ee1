"""A small client of the Prometheus HTTP API (instant queries, label values, build info), with
an injectable transport so tests can fake it; every failure becomes one `PrometheusError`.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any

import httpx

__all__ = ["Matrix", "PrometheusClient", "PrometheusError", "Vector", "format_time"]

Vector = list[tuple[dict[str, str], float]]
Matrix = list[tuple[dict[str, str], list[tuple[float, float]]]]


class PrometheusError(Exception):
    """Prometheus could not be reached or refused a query (the message says which)."""


def format_time(at_s: float) -> str:
    """A Unix time for the API, to the millisecond Prometheus stores."""
    return f"{round(at_s * 1000) / 1000:.3f}"


class PrometheusClient:
    """`query`/`query_matrix` evaluate PromQL at one time; `left_open_ranges` tells whether
    range selectors exclude their start (Prometheus 3) or include it (2.x)."""

    def __init__(
        self,
        base_url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, transport=transport, timeout=timeout_s)
        self._version: str | None = None

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"{self.base_url}{path}: {type(exc).__name__}: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise PrometheusError(
                f"{self.base_url}{path}: HTTP {response.status_code}, not a JSON answer"
            ) from exc
        if body.get("status") != "success":
            raise PrometheusError(
                f"{self.base_url}{path} {params.get('query', '')!s}: "
                f"{body.get('errorType', 'error')}: {body.get('error', response.status_code)}"
            )
        return body["data"]

    def query(self, expr: str, at_s: float) -> Vector:
        """An instant vector (or scalar) at `at_s`: (labels, value) pairs."""
        data = self._get("/api/v1/query", {"query": expr, "time": format_time(at_s)})
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr}: expected a vector, got {data['resultType']}")
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def query_value(self, expr: str, at_s: float) -> float:
        """The one value of an aggregated query; NaN when nothing matched."""
        result = self.query(expr, at_s)
        if len(result) > 1:
            raise PrometheusError(f"{expr}: {len(result)} series where one was expected")
        return result[0][1] if result else math.nan

    def query_matrix(self, expr: str, at_s: float) -> Matrix:
        """Raw samples of a range selector (`x[1m]`) at `at_s`: (labels, [(time, value)])."""
        data = self._get("/api/v1/query", {"query": expr, "time": format_time(at_s)})
        if data["resultType"] != "matrix":
            raise PrometheusError(f"{expr}: expected a matrix, got {data['resultType']}")
        return [
            (r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]
        ]

    def label_values(self, label: str, match: str, start_s: float, end_s: float) -> list[str]:
        params = {"match[]": match, "start": format_time(start_s), "end": format_time(end_s)}
        return list(self._get(f"/api/v1/label/{label}/values", params))

    def version(self) -> str:
        if self._version is None:
            self._version = str(self._get("/api/v1/status/buildinfo", {})["version"])
        return self._version

    def left_open_ranges(self) -> bool:
        """Prometheus 3 made range selectors left-open; unknown versions count as 3."""
        try:
            return int(self.version().split(".")[0]) >= 3
        except (PrometheusError, ValueError):
            return True

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
