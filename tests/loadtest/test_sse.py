import pytest

from loadtest.sse import LineSplitter, data_payload


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"data: {}", b"{}"),
        (b"data:{}", b"{}"),  # TGI: no space after the colon
        (b"data: [DONE]\r", b"[DONE]"),  # TabbyAPI: \r\n separators (the \n is split off)
        (b"data:  two spaces", b" two spaces"),  # only one space is framing
        (b"data", b""),  # a field name alone has an empty value
        (b"data\r", b""),
        (b": keep-alive", None),  # a comment
        (b":", None),
        (b"", None),  # the blank line that ends an event
        (b"\r", None),
        (b"event: error", None),
        (b"id: 7", None),
        (b"retry: 1000", None),
        (b"datafoo: x", None),  # another field whose name starts with "data"
    ],
)
def test_data_payload(raw: bytes, expected: bytes | None) -> None:
    assert data_payload(raw) == expected


def test_lines_split_across_reads_are_joined() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b'data: {"a"') == []
    assert splitter.feed(b":1}\n\ndata: [DO") == [b'data: {"a":1}', b""]
    assert splitter.feed(b"NE]\r\n\r\n") == [b"data: [DONE]\r", b"\r"]
    assert splitter.feed(b"") == []


def test_several_events_in_one_read_come_out_in_order() -> None:
    lines = LineSplitter().feed(b"data:1\n\n: ping\ndata:2\n\ndata:3\n")
    assert lines == [b"data:1", b"", b": ping", b"data:2", b"", b"data:3"]
    assert [data_payload(line) for line in lines] == [b"1", None, None, b"2", None, b"3"]
