"""`EventWriter` (services/stream_tap.py): events ready together go out in one write, with
the same bytes as one by one, and a tap that acts before an event sees everything before it
already written."""

from __future__ import annotations

import asyncio
from typing import Any

from services.stream_tap import Event, EventWriter, Write, attach_tap

E1: Event = (b"data: 1\n\n", 1, 1.0)
E2: Event = (b"data: 2\n\n", 1, 2.0)
E3: Event = (b"data: 3\n\n", 1, 3.0)
ROLE: Event = (b"data: role\n\n", 0, None)


class Tap:
    """Acts (`cut`, or writes `extra`) before the token event that follows `after` of them;
    `log` keeps what `sent` was told."""

    def __init__(self, after: int | None = None, *, cut: bool = False, extra: bytes = b""):
        self.after, self.cut, self.extra = after, cut, extra
        self.events = 0
        self.log: list[tuple[int, float | None]] = []
        self.acted = False

    def will_act(self) -> bool:
        return self.after is not None and not self.acted

    async def before_event(self, request: Any, write: Write, tokens: int) -> bool:
        if tokens > 0 and self.events == self.after:
            self.acted = True
            if self.cut:
                return False
            await write(self.extra)
        self.events += tokens > 0
        return True

    def sent(self, tokens: int, due: float | None) -> None:
        self.log.append((tokens, due))


def run(events: list[Event], tap: Tap | None) -> tuple[list[bytes], bool]:
    """The writes made, and whether the connection was cut."""
    writes: list[bytes] = []

    async def write(data: bytes) -> None:
        writes.append(data)

    request: dict[str, Any] = {}  # what `tap_of` reads of an aiohttp request
    if tap is not None:
        attach_tap(request, tap)  # type: ignore[arg-type]

    async def main() -> bool:
        try:
            await EventWriter(request, write).write_all(events)  # type: ignore[arg-type]
        except ConnectionResetError:
            return True
        return False

    return writes, asyncio.run(main())


def test_events_ready_together_are_one_write_without_a_tap() -> None:
    assert run([ROLE, E1, E2], None) == ([ROLE[0] + E1[0] + E2[0]], False)


def test_a_tap_that_does_not_act_still_hears_of_every_event_in_order() -> None:
    tap = Tap()
    assert run([ROLE, E1, E2], tap) == ([ROLE[0] + E1[0] + E2[0]], False)
    assert tap.log == [(0, None), (1, 1.0), (1, 2.0)]


def test_a_tap_that_may_act_gets_each_event_alone() -> None:
    tap = Tap(after=1, cut=True)
    writes, cut = run([ROLE, E1, E2, E3], tap)
    assert cut
    assert writes == [ROLE[0], E1[0]]  # as write_event would have sent them
    assert tap.log == [(0, None), (1, 1.0)]


def test_an_injected_event_lands_in_order() -> None:
    tap = Tap(after=2, extra=b"data: {bad\n\n")
    writes, cut = run([E1, E2, E3], tap)
    assert not cut
    assert writes == [E1[0], E2[0], b"data: {bad\n\n", E3[0]]
    assert tap.log == [(1, 1.0), (1, 2.0), (1, 3.0)]


def test_once_the_tap_has_acted_events_go_together_again() -> None:
    tap = Tap(after=0, extra=b"data: {bad\n\n")
    writes, _ = run([E1], tap)
    assert writes == [b"data: {bad\n\n", E1[0]] and not tap.will_act()
    writes, _ = run([E2, E3], tap)
    assert writes == [E2[0] + E3[0]]
