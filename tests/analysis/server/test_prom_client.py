import math
from typing import Any

import httpx
import pytest

from analysis.server.prom_client import PrometheusClient, PrometheusError, format_time
from analysis.server.promql import PromTarget, selector_for_url


def client_for(
    answer: dict[str, Any] | Exception, seen: list[httpx.Request] | None = None
) -> PrometheusClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(200 if answer.get("status") == "success" else 400, json=answer)

    return PrometheusClient("http://prom:9090/", transport=httpx.MockTransport(handler))


def ok(data: dict[str, Any]) -> dict[str, Any]:
    return {"status": "success", "data": data}


def test_vector_query_sends_the_time_to_the_millisecond() -> None:
    seen: list[httpx.Request] = []
    data = {"resultType": "vector", "result": [{"metric": {"le": "0.1"}, "value": [5.0, "NaN"]}]}
    client = client_for(ok(data), seen)
    [(labels, value)] = client.query("sum(x)", 1795000000.12345)
    assert labels == {"le": "0.1"} and math.isnan(value)
    assert seen[0].url.path == "/api/v1/query"
    assert seen[0].url.params["time"] == "1795000000.123" == format_time(1795000000.12345)
    assert seen[0].url.params["query"] == "sum(x)"


def test_query_value_is_nan_when_nothing_matched_and_scalars_work() -> None:
    assert math.isnan(client_for(ok({"resultType": "vector", "result": []})).query_value("x", 1))
    scalar = client_for(ok({"resultType": "scalar", "result": [1.0, "+Inf"]}))
    assert scalar.query_value("1/0", 1) == math.inf


def test_matrix_query() -> None:
    data = {"resultType": "matrix", "result": [{"metric": {}, "values": [[1.5, "1"], [2.5, "0"]]}]}
    assert client_for(ok(data)).query_matrix("up[1m]", 3) == [({}, [(1.5, 1.0), (2.5, 0.0)])]


def test_errors_become_prometheus_errors() -> None:
    bad = {"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}
    with pytest.raises(PrometheusError, match="bad_data: parse error at char 4"):
        client_for(bad).query("sum(", 1)
    with pytest.raises(PrometheusError, match="ConnectError"):
        client_for(httpx.ConnectError("refused")).query("x", 1)
    several = ok(
        {"resultType": "vector", "result": [{"metric": {"a": "1"}, "value": [1, "1"]}] * 2}
    )
    with pytest.raises(PrometheusError, match="2 series where one was expected"):
        client_for(several).query_value("x", 1)


@pytest.mark.parametrize(("version", "left_open"), [("2.42.0+ds", False), ("3.5.0", True)])
def test_range_semantics_follow_the_version(version: str, left_open: bool) -> None:
    assert client_for(ok({"version": version})).left_open_ranges() is left_open


def test_selectors() -> None:
    assert selector_for_url("http://127.0.0.1:8000/metrics") == 'instance="127.0.0.1:8000"'
    assert selector_for_url("http://tgi/metrics") == 'instance="tgi:80"'
    with pytest.raises(ValueError, match="needs a selector"):
        PromTarget("vllm", " ")


@pytest.mark.parametrize(
    ("left_open", "counter_ms", "gauge_ms"),
    [(False, 5000, 4999), (True, 5001, 5000)],  # 2.x [t-r, t]; 3.x (t-r, t]
)
def test_ranges_take_the_same_samples_on_both_versions(
    left_open: bool, counter_ms: int, gauge_ms: int
) -> None:
    from analysis.server.promql import _window

    w = _window((100.0, 105.0), left_open)
    assert (w.at_s, w.counter_ms, w.gauge_ms) == (105.0, counter_ms, gauge_ms)
