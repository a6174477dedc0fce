"""Task and Status: one normalized snapshot of a task, whatever route family answered."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import attrs

from . import _wire
from ._errors import ProtocolError
from ._routes import Route
from ._text import snippet

__all__ = ["Status", "Task", "answer_text", "restamp", "status_of", "task_from_answer"]


class Status(enum.StrEnum):
    """The normalized status of a task. Only COMPLETED, FAILED and CANCELLED are terminal."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        """Whether the task has ended and will not change again."""
        return self in _TERMINAL


_TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})

_WORDS: dict[str, Status] = {
    **dict.fromkeys(
        ("pending", "queued", "queuing", "queueing", "submitted", "not_start", "not_started",
         "in_queue", "waiting", "created", "preparing"),
        Status.QUEUED,
    ),
    **dict.fromkeys(
        ("processing", "in_progress", "running", "generating", "image_downloading",
         "video_generating", "video_upsampling"),
        Status.PROCESSING,
    ),
    **dict.fromkeys(
        ("completed", "complete", "succeeded", "success", "succeed", "successful", "done",
         "finished"),
        Status.COMPLETED,
    ),
    **dict.fromkeys(("failed", "failure", "fail", "error", "errored"), Status.FAILED),
    **dict.fromkeys(("cancelled", "canceled"), Status.CANCELLED),
    "unknown": Status.UNKNOWN,
}


def status_of(word: str | None, *, has_result: bool = False, upsampling: bool = False) -> Status:
    """Map a status word of any family (any case) onto a Status; unknown words are UNKNOWN.

    Veo reports steps such as ``video_generation_completed`` on its way: a ``*_completed``
    step is COMPLETED only once it carries a result and no upsampling is pending (when
    ``upsampling`` was asked for, only ``video_upsampling_completed`` has it done), and
    PROCESSING until then. ``unknown`` (``/v1/videos``: not started yet) stays UNKNOWN.
    """
    if not word:
        return Status.UNKNOWN
    key = word.strip().lower().replace("-", "_").replace(" ", "_")
    status = _WORDS.get(key)
    if status is not None:
        return status
    if key.endswith(("_failed", "_failure", "_error")):
        return Status.FAILED
    if key.endswith(("_cancelled", "_canceled")):
        return Status.CANCELLED
    if key.endswith("_completed"):
        pending = upsampling and key != "video_upsampling_completed"
        return Status.COMPLETED if has_result and not pending else Status.PROCESSING
    return Status.UNKNOWN


def _is_url(text: str) -> bool:
    """Whether a result field's text is a URL: absolute http(s) with a host, or a path on the
    gateway (``/v1/videos/{id}/content``; ``//cdn.example/x.mp4`` is one too). Anything else
    there, such as ``"task timed out (1440 minutes)"``, is a failure text put in its place."""
    if not text or any(ch.isspace() for ch in text):
        return False
    try:
        parts = urlsplit(text)
        if text.startswith("//"):
            return bool(parts.hostname)
        if text.startswith("/"):
            return True
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False


@attrs.frozen
class Task:
    """One normalized snapshot of a task, from any answer of the gateway.

    Attributes:
        id: The id the task was created with; the identity of the task.
        status: The normalized status.
        raw_status: The status as the server wrote it (``""`` when it wrote none).
        progress: 0..100, or None when the answer carried none.
        video_url: The result URL, wherever the answer put it: an http(s) URL or a path on the
            gateway, and only on a COMPLETED task; None otherwise.
        model: The model, when the answer names it.
        created_at: When the task was created (aware, UTC), when the answer says.
        updated_at: The last status change (aware, UTC), when the answer says.
        error: The failure reason; None unless the task FAILED or was CANCELLED.
        raw: The answer's body as received.
        route: The route family the task was created on, and is queried on.
    """

    id: str
    status: Status
    raw_status: str = ""
    progress: int | None = None
    video_url: str | None = None
    model: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    error: str | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    route: Route = Route.UNIFIED

    @property
    def terminal(self) -> bool:
        """Whether the task has ended: COMPLETED, FAILED or CANCELLED."""
        return self.status.terminal

    @classmethod
    def from_response(
        cls, body: Mapping[str, Any], *, task_id: str | None = None,
        route: Route = Route.UNIFIED,
    ) -> Task:
        """Normalize a create or query answer of any route family.

        Args:
            body: The decoded JSON answer.
            task_id: The id the task was created with. It wins over the answer's id, which
                some families change between create and query.
            route: The route family the answer came from (the task's, from then on).

        Raises:
            ProtocolError: ``body`` is not a JSON object, or carries no id and none was given.
        """
        return _normalize(cls, body, body, task_id, route)


def task_from_answer(
    text: bytes, body: Mapping[str, Any], *, task_id: str | None = None,
    route: Route = Route.UNIFIED,
) -> Task:
    """``Task.from_response(body)`` of an answer that came as ``text``, keeping the bytes.

    Its ``raw`` holds ``text``, a fraction of the decoded object's size, and decodes it when
    first read: a process watching 100,000 tasks keeps 100,000 last answers.
    """
    return _normalize(Task, body, _Body(text), task_id, route)


class _Body(Mapping[str, Any]):
    """An answer's body, kept as the bytes received and decoded when it is first read."""

    __slots__ = ("_data", "text")

    def __init__(self, text: bytes) -> None:
        self.text = text  #: the JSON object as received
        self._data: Mapping[str, Any] | None = None

    def _decoded(self) -> Mapping[str, Any]:
        data = self._data
        if data is None:
            data = self._data = json.loads(self.text)
        return data

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return repr(self._decoded())


def restamp(previous: Task, text: bytes, old: int, new: int) -> Task | None:
    """``previous`` again, read from ``text``: its answer but for the stamp, ``old`` now ``new``.

    None (decode ``text``) unless ``previous.updated_at`` was read from that stamp.
    """
    before = previous.updated_at
    if before is None or before.timestamp() != _wire.epoch_seconds(old):
        return None
    updated = _wire.stamp(new)
    if updated is None:
        return None
    p = previous  # attrs.evolve, written out: it reads the class's fields on every call
    return Task(id=p.id, status=p.status, raw_status=p.raw_status, progress=p.progress,
                video_url=p.video_url, model=p.model, created_at=p.created_at,
                updated_at=updated, error=p.error, raw=_Body(text), route=p.route)


def answer_text(task: Task | None) -> bytes | None:
    """The bytes ``task`` was read from, if it came from :func:`task_from_answer`."""
    raw = task.raw if task is not None else None
    return raw.text if isinstance(raw, _Body) else None


def _normalize(
    cls: type[Task], body: Mapping[str, Any], raw: Mapping[str, Any], task_id: str | None,
    route: Route,
) -> Task:
    """``Task.from_response``, keeping ``raw`` as the task's ``raw``."""
    if not isinstance(body, Mapping):
        raise ProtocolError(
            f"expected a JSON object for a task, got {type(body).__name__}",
            body=snippet(_dump(body)),
        )
    wire = _wire.read(body)
    data = wire.data or _wire.Data()
    meta = wire.metadata or _wire.Data()
    content = data.data.content if data.data and data.data.content else None
    # A string id, else a task_id; a numeric id (the native row id) only as a last resort.
    ident = task_id or wire.id or wire.task_id or data.task_id or wire.row_id
    if not ident:
        raise ProtocolError(
            "the answer carries no task id (neither id nor task_id)",
            body=snippet(_dump(body)),
        )
    slots = [text for text in (  # where results go; a failure text may go there too
        wire.video_url, wire.url, wire.result_url, meta.url, meta.video_url,
        data.url, data.result_url, data.video_url, content.video_url if content else None,
    ) if text]
    # Older data keeps a success URL in fail_reason: the last place to look for one.
    url = _first(text for text in (*slots, wire.fail_reason, data.fail_reason)
                 if text and _is_url(text))
    raw_status = sys.intern(wire.status or data.status or "")  # a few words, 100,000 tasks
    asked = wire.detail.input if wire.detail else None  # the create body, when echoed
    upsampling = asked is not None and asked.enable_upsample is True
    status = status_of(raw_status, has_result=url is not None, upsampling=upsampling)
    progress: int | None = wire.progress if wire.progress is not None else data.progress
    if progress is None and status is Status.COMPLETED:
        progress = 100
    error = None
    if status in (Status.FAILED, Status.CANCELLED):
        error = _first((
            wire.fail_reason, wire.error, data.fail_reason, data.error, data.message,
            meta.fail_reason, meta.error, meta.message, wire.base_resp, wire.message,
            *(text for text in slots if not _is_url(text)),
        )) or f"the gateway reported {raw_status!r} without a reason"
    return cls(
        id=str(ident),
        status=status,
        raw_status=raw_status,
        progress=progress,
        video_url=url if status is Status.COMPLETED else None,
        model=None if wire.model is None else sys.intern(wire.model),
        created_at=wire.created_at or data.created_at,
        updated_at=wire.status_update_time or wire.updated_at or data.updated_at,
        error=error,
        raw=raw,
        route=route,
    )


def _first(values: Iterable[str | None]) -> str | None:
    """The first value that is not None or empty."""
    return next(filter(None, values), None)


def _dump(body: object) -> str:
    try:
        return json.dumps(body, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(body)
