import json
import threading
from pathlib import Path

import httpx
import pytest

from analysis.server.mapping import sample_filter
from analysis.server.samples import load_samples, load_scrapes
from analysis.server.scrape import HttpFetch, MetricsRecorder
from tests.analysis.server.data import TGI, VLLM_033


class ScriptedFetch:
    """Answers from a script: a page, or an exception to raise (a server that is down)."""

    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)
        self.urls: list[str] = []

    def __call__(self, url: str) -> tuple[str, str]:
        self.urls.append(url)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer, "text/plain; version=0.0.4"


def test_each_scrape_is_one_line_and_a_failure_is_a_record(tmp_path: Path) -> None:
    # Each answered fetch reads the clock twice (asked, answered): a scrape is stamped when the
    # answer arrived; a fetch that failed keeps the time it was asked.
    clock = iter([100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0])
    fetch = ScriptedFetch(VLLM_033, httpx.ConnectError("refused"), "not { a page", VLLM_033)
    recorder = MetricsRecorder(
        tmp_path, "a", "http://x/metrics", fetch=fetch, clock=lambda: next(clock)
    )
    assert [recorder.scrape_once() for _ in range(4)] == [True, False, False, True]
    assert recorder.scrapes == 4 and recorder.errors == 2 and recorder.last_ok_s == 106.0
    lines = [
        json.loads(line) for line in (tmp_path / "server_metrics.jsonl").read_text().splitlines()
    ]
    assert [(r["target"], r["wall_s"], r["ok"]) for r in lines] == [
        ("a", 101.0, True), ("a", 102.0, False), ("a", 104.0, False), ("a", 106.0, True),
    ]  # fmt: skip
    assert lines[1]["error"] == "ConnectError: refused"
    assert lines[2]["error"].startswith("ValueError"), "an unparsable page is a failed scrape"
    assert ["vllm:prompt_tokens_total", {"engine": "0", "model_name": "m"}, 120.0] in lines[0][
        "samples"
    ]
    assert fetch.urls == ["http://x/metrics"] * 4


def test_keep_filter_shrinks_the_records(tmp_path: Path) -> None:
    recorder = MetricsRecorder(
        tmp_path, "t", "u", fetch=ScriptedFetch(TGI), keep=sample_filter("tgi")
    )
    recorder.scrape_once()
    names = set(load_samples(tmp_path)["name"])
    assert "tgi_request_success_total" in names and "tgi_request_failure_total" not in names


def test_background_thread_and_context_manager(tmp_path: Path) -> None:
    scraped = threading.Event()

    def fetch(url: str) -> tuple[str, str]:
        scraped.set()
        return VLLM_033, ""

    with MetricsRecorder(tmp_path, "a", "u", interval_s=0.01, fetch=fetch) as recorder:
        assert scraped.wait(5.0)
        while recorder.scrapes < 3:
            scraped.clear()
            assert scraped.wait(5.0), "the recorder stopped scraping"
    count = recorder.scrapes
    assert count >= 4, "the scrapes plus one at stop()"
    scrapes = load_scrapes(tmp_path)
    assert len(scrapes) == count and scrapes["ok"].all()
    assert scrapes["wall_s"].is_monotonic_increasing
    recorder.stop()  # idempotent
    assert len(load_scrapes(tmp_path)) == count


def test_recorders_of_two_targets_share_the_file(tmp_path: Path) -> None:
    a = MetricsRecorder(tmp_path, "a", "u", fetch=ScriptedFetch(VLLM_033))
    b = MetricsRecorder(tmp_path, "b", "u", fetch=ScriptedFetch(TGI))
    for _ in range(3):
        a.scrape_once()
        b.scrape_once()
    assert load_scrapes(tmp_path)["target"].value_counts().to_dict() == {"a": 3, "b": 3}


def test_http_fetch_raises_on_an_error_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/down/metrics":
            return httpx.Response(503, text="loading")
        assert "text/plain" in request.headers["accept"]
        return httpx.Response(200, text=TGI, headers={"content-type": "text/plain"})

    fetch = HttpFetch(transport=httpx.MockTransport(handler))
    assert fetch("http://sim/metrics") == (TGI, "text/plain")
    with pytest.raises(httpx.HTTPStatusError, match="503"):
        fetch("http://sim/down/metrics")  # a loading server's 503 is no scrape
    fetch.close()


def test_http_fetch_sends_the_targets_authorization() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, text=TGI, headers={"content-type": "text/plain"})

    fetch = HttpFetch(
        transport=httpx.MockTransport(handler), headers={"Authorization": "Bearer k-123"}
    )
    fetch("http://sim/metrics")
    fetch.close()
    assert seen == ["Bearer k-123"], "a server that guards /metrics behind its key is scraped"


def test_an_unwritable_run_directory_is_reported_at_stop(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the run directory should be
    recorder = MetricsRecorder(blocked, "a", "u", interval_s=0.01, fetch=ScriptedFetch(TGI))
    recorder.start()
    with pytest.raises(OSError):
        recorder.stop()
