"""`quantbench sim` flags derived from the settings models, so a new field is a new flag.

Each field of `SimSettings`, and of its nested `FaultConfig` (in their own group), becomes
`--field-name` (a seconds suffix `_s` dropped: `restart_at_s` is `--restart-at`; a nested name
that collides with a top-level one gets a `fault-` prefix: `--fault-seed`). Values go to
pydantic as text, so validation and its messages are the model's own. `faults.errors` is the
one list: `--error STATUS:RATE`, repeatable. `--settings-json` gives a whole `SimSettings` as
JSON (what `quantbench run` passes); flags given beside it override its fields.
"""

from __future__ import annotations

import argparse
import json
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from services.sim.config import FaultConfig, SimSettings
from services.sim.errors import SimConfigError

__all__ = ["add_settings_flags", "flag_arguments", "settings_from_args"]

_DEST = "qb_setting__"
_ERRORS = ("faults", "errors")


def _fields() -> Iterator[tuple[tuple[str, ...], str, FieldInfo]]:
    """(path in the settings model, flag, field) of every settable field, in model order."""
    top = set(SimSettings.model_fields)
    for name, info in SimSettings.model_fields.items():
        if name == "faults":
            for sub, sub_info in FaultConfig.model_fields.items():
                flag = "error" if sub == "errors" else sub.removesuffix("_s")
                if flag in top:
                    flag = f"fault_{flag}"
                yield ("faults", sub), "--" + flag.replace("_", "-"), sub_info
        else:
            yield (name,), "--" + name.removesuffix("_s").replace("_", "-"), info


def _dest(path: tuple[str, ...]) -> str:
    return _DEST + "__".join(path)


def _choices(info: FieldInfo) -> list[str] | None:
    if typing.get_origin(info.annotation) is typing.Literal:
        return [str(c) for c in typing.get_args(info.annotation)]
    return None


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """Add `--settings-json` and one flag per settings field to `parser`."""
    parser.add_argument(
        "--settings-json", metavar="JSON", help="a whole SimSettings as JSON; flags override it"
    )
    faults = parser.add_argument_group("faults (times in simulated seconds after start)")
    for path, flag, info in _fields():
        group = faults if path[0] == "faults" else parser
        help_text = info.description or ""
        if "default" not in help_text:
            help_text += f" (default: {'none' if info.default is None else info.default})"
        if path == _ERRORS:
            group.add_argument(
                flag,
                dest=_dest(path),
                action="append",
                default=argparse.SUPPRESS,
                metavar="STATUS:RATE",
                help=f"{info.description}, e.g. 503:0.01 (repeatable)",
            )
            continue
        group.add_argument(
            flag,
            dest=_dest(path),
            default=argparse.SUPPRESS,
            choices=_choices(info),
            metavar=None if _choices(info) else _metavar(path[-1], info),
            help=help_text,
        )


def _metavar(name: str, info: FieldInfo) -> str:
    if name.endswith("_s"):
        return "S"
    if name.endswith("_ms"):
        return "MS"
    if name.endswith("_rate"):
        return "RATE"
    kinds = set(typing.get_args(info.annotation)) or {info.annotation}
    return "N" if int in kinds else "X" if float in kinds else "PATH" if Path in kinds else "TEXT"


def _status_rate(text: str) -> dict[str, str]:
    status, sep, rate = text.partition(":")
    if not sep:
        raise SimConfigError(f"--error {text!r}: write STATUS:RATE, e.g. 503:0.01")
    return {"status": status, "rate": rate}


def settings_from_args(args: argparse.Namespace) -> SimSettings:
    """`--settings-json` (or the defaults) with every given flag on top, validated.

    Raises pydantic's `ValidationError`, or `SimConfigError` for malformed JSON or `--error`.
    """
    data: dict[str, Any] = {}
    if getattr(args, "settings_json", None):
        try:
            data = json.loads(args.settings_json)
        except ValueError as exc:
            raise SimConfigError(f"--settings-json is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise SimConfigError("--settings-json must be a JSON object")
    for path, _, _ in _fields():
        dest = _dest(path)
        if not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        if path == _ERRORS:
            value = [_status_rate(text) for text in value]
        target = data
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return SimSettings.model_validate(data)


def flag_arguments(settings: SimSettings) -> list[str]:
    """The flags that reproduce `settings` (fields left at their default are omitted)."""
    args: list[str] = []
    for path, flag, info in _fields():
        holder: BaseModel = settings.faults if path[0] == "faults" else settings
        value = getattr(holder, path[-1])
        if value == info.get_default(call_default_factory=True):
            continue
        if path == _ERRORS:
            args += [f"{flag}={error.status}:{error.rate}" for error in value]
        else:
            args.append(f"{flag}={value}")
    return args
