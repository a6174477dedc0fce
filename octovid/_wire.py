"""Where things live in the gateway's task answers, and the one cattrs converter that reads them.

The unified routes pass answers through from different upstreams, so the same fact sits in
different places and types (PROTOCOL.md sections 3 and 6). The classes below declare every
place; the leaf hooks turn every type seen into one, and turn anything else into ``None``.
Reading never raises: a body that does not fit simply yields fewer facts. What the facts
mean (which text is a URL, which status is the end) is for ``_task`` to decide.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NewType, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

__all__ = ["Wire", "converter", "epoch_seconds", "instant", "read"]

Text = NewType("Text", str)  # a non-empty string; numbers become strings
Name = NewType("Name", str)  # a non-empty string, and only a string
Number = NewType("Number", str)  # a number, as a string (an integer ``id`` is a database row)
Slot = NewType("Slot", str)  # what a result-URL field holds: a URL, or a failure text put there
Percent = NewType("Percent", int)  # 0..100, from 50, 50.0, "50" or "50%"
Instant = NewType("Instant", datetime)  # aware UTC, from epoch s, epoch ms or RFC 3339
Reason = NewType("Reason", str)  # a failure reason: a string, or an error object's message or code
Flag = NewType("Flag", bool)  # true or false, from a bool, "true"/"false" or 1/0

# Epoch values above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MILLIS = 1e11
_EARLIEST, _LATEST = 946_684_800, 32_503_680_000  # 2000-01-01, 3000-01-01: plausible instants
# What error codes and messages say when nothing went wrong: no reason.
_NO_ERROR = frozenset({"0", "success", "succeed", "succeeded", "ok"})


@attrs.frozen
class Content:
    """``data.data.content`` of the native route."""

    video_url: Slot | None = None


@attrs.frozen
class Inner:
    """``data.data`` of the native route."""

    content: Content | None = None


@attrs.frozen
class Data:
    """``data`` (the native route's wrapper, some channels' results) or ``metadata``.

    The native wrapper's ``data.id`` is an integer row id, never read: its task is ``task_id``.
    """

    task_id: Text | None = None
    status: Text | None = None
    progress: Percent | None = None
    created_at: Instant | None = None
    updated_at: Instant | None = None
    url: Slot | None = None
    result_url: Slot | None = None
    video_url: Slot | None = None
    fail_reason: Reason | None = None
    error: Reason | None = None
    message: Reason | None = None
    data: Inner | None = None


@attrs.frozen
class Input:
    """``detail.input``: the create body, as some channels echo it."""

    enable_upsample: Flag | None = None


@attrs.frozen
class Detail:
    """``detail`` of the unified and OpenAI-format answers."""

    input: Input | None = None


@attrs.frozen
class Wire:
    """A task answer of any route family, as far as octovid reads it.

    ``completed_at``, ``finish_time`` and ``expires_at`` are not read: some converters fill
    them while the task runs, and only the status says whether it ended.
    """

    id: Name | None = None
    row_id: Number | None = None  # ``id`` when it is a number (read from "id", see below)
    task_id: Text | None = None
    status: Text | None = None
    progress: Percent | None = None
    model: Text | None = None
    created_at: Instant | None = None
    status_update_time: Instant | None = None
    updated_at: Instant | None = None
    video_url: Slot | None = None
    url: Slot | None = None
    result_url: Slot | None = None
    fail_reason: Reason | None = None
    error: Reason | None = None
    message: Reason | None = None
    base_resp: Reason | None = None  # MiniMax: {"status_code": 0, "status_msg": "success"}
    metadata: Data | None = None
    data: Data | None = None
    detail: Detail | None = None


# No detailed validation: the hooks never raise, so there is nothing to gather errors of.
converter = cattrs.Converter(detailed_validation=False)


def _text(value: object, _: object) -> str | None:
    if type(value) is str:  # the common case first
        text = value.strip()
        return text or None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _name(value: object, _: object) -> str | None:
    return _text(value, None) if isinstance(value, str) else None


def _number(value: object, _: object) -> str | None:
    return _text(value, None) if isinstance(value, int | float) else None


def _slot(value: object, _: object) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        if value and value.lower() != "null":
            return value
    return None


def _flag(value: object, _: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower())
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
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
    return stamp(seconds)


def epoch_seconds(value: float) -> float:
    """Epoch seconds of an epoch number in seconds or milliseconds (above 1e11)."""
    return value / 1000 if value > _MILLIS else value


def instant(value: object) -> datetime | None:
    """An instant as answers write it (epoch seconds or milliseconds, RFC 3339); None if not."""
    return _instant(value, None)


def stamp(number: float) -> datetime | None:
    """``instant(number)`` of a finite epoch number, without the checks of other types."""
    seconds = epoch_seconds(number)
    return datetime.fromtimestamp(seconds, UTC) if _EARLIEST <= seconds <= _LATEST else None


def _reason(value: object, _: object) -> str | None:
    """A failure reason: a text, or an error object's message, else its code.

    ``{"message": "", "code": ""}`` (a running OpenAI-style task) and the codes and messages
    of success (``0``, ``"success"``) are no reason; a numeric code reads "error code 1026".
    """
    if isinstance(value, Mapping):
        keys = ("message", "status_msg", "code", "status_code")  # status_*: MiniMax base_resp
        return next(filter(None, (_said(value.get(key)) for key in keys)), None)
    return _said(value)


def _said(value: object) -> str | None:
    text = _text(value, None)
    if text is None or text.lower() in _NO_ERROR:
        return None
    return text if isinstance(value, str) else f"error code {text}"


for _type, _hook in (
    (Text, _text), (Name, _name), (Number, _number), (Slot, _slot), (Percent, _percent),
    (Instant, _instant), (Reason, _reason), (Flag, _flag),
):
    converter.register_structure_hook(_type, _hook)
    # ``T | None`` straight to the hook (which reads None as None), not through cattrs'
    # optional dispatch, on every field of every answer.
    converter.register_structure_hook(_type | None, _hook)

T = TypeVar("T")


def _lenient(cls: type[T], **fields: Any) -> Callable[[Any, Any], T | None]:
    """A structure hook for a wire class: anything but an object reads as None."""
    structure = make_dict_structure_fn(cls, converter, **fields)

    def hook(value: Any, _: Any) -> T | None:
        if type(value) is dict or isinstance(value, Mapping):  # dict: skip the ABC check
            return structure(value, cls)
        return None

    return hook


for _cls in (Content, Inner, Data, Input, Detail):
    converter.register_structure_hook(_cls, _lenient(_cls))
    converter.register_structure_hook(_cls | None, converter.get_structure_hook(_cls))
# ``id`` is read twice: as a name (strings only) and as a row number (numbers only).
converter.register_structure_hook(Wire, _lenient(Wire, row_id=override(rename="id")))


def read(body: Mapping[str, Any]) -> Wire:
    """Read what octovid needs from a task answer; never raises on a JSON object."""
    wire = converter.structure(body, Wire)
    assert wire is not None  # body is a Mapping
    return wire
