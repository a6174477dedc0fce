"""Where things live in the gateway's task answers, and the one cattrs converter that reads them.

The unified routes pass answers through from different upstreams, so the same fact sits in
different places and types (PROTOCOL.md section 3). The classes below declare every place;
the leaf hooks turn every type seen into one, and turn anything else into ``None``. Reading
never raises: a body that does not fit simply yields fewer facts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NewType, TypeVar

import attrs
import cattrs

__all__ = ["Wire", "converter", "read"]

Text = NewType("Text", str)  # a non-empty string; numbers become strings
Url = NewType("Url", str)  # a non-empty string with no whitespace
Percent = NewType("Percent", int)  # 0..100, from 50, 50.0, "50" or "50%"
Instant = NewType("Instant", datetime)  # aware UTC, from epoch s, epoch ms or RFC 3339
Reason = NewType("Reason", str)  # a failure reason: a string, or an object's message or code

# Epoch values above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MILLIS = 1e11
_EARLIEST, _LATEST = 946_684_800, 32_503_680_000  # 2000-01-01, 3000-01-01: plausible instants


@attrs.frozen
class Content:
    """``data.data.content`` of the native route."""

    video_url: Url | None = None


@attrs.frozen
class Inner:
    """``data.data`` of the native route."""

    content: Content | None = None


@attrs.frozen
class Data:
    """``data`` (the native route's wrapper, some channels' results) or ``metadata``."""

    task_id: Text | None = None
    status: Text | None = None
    progress: Percent | None = None
    url: Url | None = None
    result_url: Url | None = None
    video_url: Url | None = None
    fail_reason: Reason | None = None
    error: Reason | None = None
    data: Inner | None = None


@attrs.frozen
class Wire:
    """A task answer of any route family, as far as octovid reads it."""

    id: Text | None = None
    task_id: Text | None = None
    status: Text | None = None
    progress: Percent | None = None
    model: Text | None = None
    created_at: Instant | None = None
    status_update_time: Instant | None = None
    updated_at: Instant | None = None
    video_url: Url | None = None
    url: Url | None = None
    result_url: Url | None = None
    fail_reason: Reason | None = None
    error: Reason | None = None
    message: Reason | None = None
    metadata: Data | None = None
    data: Data | None = None


converter = cattrs.Converter()


def _text(value: object, _: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _url(value: object, _: object) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        if value and not any(ch.isspace() for ch in value) and value.lower() != "null":
            return value
    return None


def _percent(value: object, _: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip().removesuffix("%").strip()
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int):
        return max(0, min(100, value))
    if isinstance(value, float) and math.isfinite(value):
        return max(0, min(100, int(value)))
    return None


def _instant(value: object, _: object) -> datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text)
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=UTC)
                parsed = parsed.astimezone(UTC)
            except (ValueError, OverflowError):
                return None
            return parsed if _EARLIEST <= parsed.timestamp() <= _LATEST else None
    if not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None  # 0 means "not yet"
    if seconds > _MILLIS:
        seconds /= 1000
    if not _EARLIEST <= seconds <= _LATEST:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def _reason(value: object, _: object) -> str | None:
    if isinstance(value, Mapping):  # {"message": "", "code": ""} while fine: not a failure
        return _text(value.get("message"), None) or _text(value.get("code"), None)
    return _text(value, None)


for _type, _hook in (
    (Text, _text), (Url, _url), (Percent, _percent), (Instant, _instant), (Reason, _reason)
):
    converter.register_structure_hook(_type, _hook)

T = TypeVar("T")


def _lenient(cls: type[T]) -> Callable[[Any, Any], T | None]:
    """A structure hook for a wire class: anything but an object reads as None."""
    structure = cattrs.gen.make_dict_structure_fn(cls, converter)

    def hook(value: Any, _: Any) -> T | None:
        return structure(value, cls) if isinstance(value, Mapping) else None

    return hook


for _cls in (Content, Inner, Data, Wire):
    converter.register_structure_hook(_cls, _lenient(_cls))


def read(body: Mapping[str, Any]) -> Wire:
    """Read what octovid needs from a task answer; never raises on a JSON object."""
    wire = converter.structure(body, Wire)
    assert wire is not None  # body is a Mapping
    return wire

