import pytest

from loadtest.sse import SseLine, parse_sse_line


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"data: {}\n", SseLine("data", "{}")),
        (b"data:{}\n", SseLine("data", "{}")),  # TGI: no space after the colon
        (b"data: [DONE]\r\n", SseLine("data", "[DONE]")),  # TabbyAPI: \r\n separators
        (b"data:  two spaces\n", SseLine("data", " two spaces")),  # only one space is framing
        (b": keep-alive\n", SseLine("comment", " keep-alive")),
        (b"\n", SseLine("blank", "")),
        (b"\r\n", SseLine("blank", "")),
        (b"event: error\n", SseLine("event", "error")),
        (b"data\n", SseLine("data", "")),
    ],
)
def test_parse_sse_line(raw: bytes, expected: SseLine) -> None:
    assert parse_sse_line(raw) == expected
