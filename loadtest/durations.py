"""Durations as bench.yaml writes them (`30s`, `5m`, `500ms`, `1h`, or seconds), for every
config model of the load generator; a module of its own so that config models of
sub-packages (traces, quality) can use it without importing `loadtest.config`."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field

__all__ = ["Duration", "PositiveDuration", "parse_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> object:
    """`30s`, `5m`, `500ms`, `1h` or a plain number of seconds; anything else is left to fail."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a duration; write e.g. 30s, 5m or 500ms")
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 5m or 500ms")
        return float(match.group(1)) * _UNIT_S[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
