"""The API key: sent with every request, removed from every text that is stored or shown;
a server's error body as one line."""

from __future__ import annotations

import pytest

from loadtest.secrets import REDACTED, Redactor, auth_headers
from loadtest.server_text import server_message

CANARY = "sk-canary-3f9a1c77e2"


def test_the_key_and_any_bearer_value_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QB_TEST_KEY", CANARY)
    redact = Redactor("QB_TEST_KEY", None)
    echoed = f'{{"error": "bad header: Authorization: Bearer {CANARY}", "key": "{CANARY}"}}'
    assert redact(echoed) == (
        f'{{"error": "bad header: Authorization: Bearer {REDACTED}", "key": "{REDACTED}"}}'
    )
    assert redact("token bearer%20abc.def-123 rest") == f"token bearer%20{REDACTED} rest"
    assert redact.optional(None) is None
    assert auth_headers("QB_TEST_KEY") == {"Authorization": f"Bearer {CANARY}"}


def test_no_key_no_header_and_ordinary_text_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QB_ABSENT_KEY", raising=False)
    monkeypatch.setenv("QB_SHORT_KEY", "a")
    assert auth_headers("QB_ABSENT_KEY") == {} and auth_headers(None) == {}
    assert Redactor("QB_SHORT_KEY", "QB_ABSENT_KEY")("a bad answer") == "a bad answer"


@pytest.mark.parametrize(
    ("body", "line"),
    [
        (
            '{"error": {"message": "This model\'s maximum context length is 1024 tokens.",'
            ' "type": "BadRequestError", "code": 400}}',
            "This model's maximum context length is 1024 tokens.",
        ),
        ('{"object": "error", "message": "model not found"}', "model not found"),
        (
            '{"error": "Input validation error: too long", "error_type": "validation"}',
            "Input validation error: too long",
        ),
        (
            "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n<body>\n"
            "<h1>Not Found</h1><p>The requested URL was not found on this server.</p>\n"
            "</body></html>",
            "404 Not Found",
        ),
        ("<html><body><h1>Bad\n Gateway</h1></body></html>", "Bad Gateway"),
        ("plain\ntext  answer\n", "plain text answer"),
        ('{"error": {"message": "cut off', '{"error": {"message": "cut off'),
        ("", ""),
    ],
)
def test_a_server_error_body_becomes_one_short_line(body: str, line: str) -> None:
    assert server_message(body) == line


def test_a_long_body_is_clipped() -> None:
    message = server_message("x" * 1000)
    assert len(message) == 200 and message.endswith("…")
