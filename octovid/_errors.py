"""Every error octovid raises, and the mapping of gateway error answers onto them.

The tree::

    OctovidError
    ├── ConfigError                  bad or missing configuration (no API key, bad base URL)
    ├── RequestValidationError       a request that would be refused; also a ValueError
    ├── ProtocolError                an answer octovid cannot read: not JSON, not an object, no id
    ├── TransportError               the connection failed or timed out
    │   └── CreateUncertainError     a create may have been accepted (and billed); carries it
    ├── APIError                     the gateway answered with an HTTP error
    │   ├── AuthenticationError      401
    │   ├── PermissionDeniedError    403
    │   │   └── InsufficientQuotaError   403 with a quota code
    │   ├── BadRequestError          400, 413, 422
    │   │   └── TaskNotFoundError    400 task_not_exist, 404
    │   ├── RateLimitError           429
    │   └── ServerError              5xx
    ├── TaskFailedError              the task ended FAILED or CANCELLED
    ├── WaitTimeoutError             a job's deadline passed; also a TimeoutError
    ├── JournalError                 the journal refuses an operation (a key reused, other body)
    └── DownloadError                a download that could not be completed and verified
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._requests import Request
    from ._task import Task

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "CreateUncertainError",
    "DownloadError",
    "InsufficientQuotaError",
    "JournalError",
    "OctovidError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitError",
    "RequestValidationError",
    "ServerError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TransportError",
    "WaitTimeoutError",
    "error_from_response",
    "snippet",
]

QUOTA_CODES = frozenset({"insufficient_user_quota", "pre_consume_token_quota_failed"})
# Answers that no amount of waiting will mend, although their status says "server error".
PERMANENT_SERVER_CODES = frozenset({"model_not_found"})


class OctovidError(Exception):
    """The root of every error octovid raises."""


class ConfigError(OctovidError):
    """The client is configured in a way that cannot work (no API key, a bad base URL)."""


class RequestValidationError(OctovidError, ValueError):
    """A request that the gateway would refuse, caught before anything is sent.

    Attributes:
        field: The offending field.
        value: The value given.
        allowed: What the field accepts, in words.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}={value!r} is not allowed: {allowed}")


class ProtocolError(OctovidError):
    """An answer octovid cannot make sense of: not JSON, not an object, or without a task id.

    Attributes:
        status: The HTTP status of the answer, when there was one.
        body: The start of the answer's body, for error reports.
    """

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(message)


class TransportError(OctovidError):
    """The request did not get an answer: the connection failed, broke or timed out.

    Attributes:
        sent: False when the request surely never reached the server (the connection was
            never made); True when it may have.
    """

    def __init__(self, message: str, *, sent: bool = True) -> None:
        self.sent = sent
        super().__init__(message)


class CreateUncertainError(TransportError):
    """A create was sent but its answer was lost: the gateway may have accepted and billed it.

    octovid does not send it again on its own (see ``RetryPolicy.retry_ambiguous_create``).

    Attributes:
        request: The request whose fate is unknown.
    """

    def __init__(self, message: str, *, request: Request) -> None:
        self.request = request
        super().__init__(message, sent=True)


class APIError(OctovidError):
    """The gateway answered with an HTTP error.

    Attributes:
        status: The HTTP status.
        code: The gateway's error code (``""`` when it gave none).
        message: The gateway's message, or a description of the body when it had none.
        request_id: The ``X-Oneapi-Request-Id`` of the answer, for reports to the gateway.
        body: The start of the answer's body.
        retry_after: Seconds the server asked to wait (``Retry-After``), or None.
        from_gateway: Whether the body was a JSON error of the gateway (not a proxy's page).
    """

    hint = ""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str = "",
        request_id: str | None = None,
        body: str = "",
        retry_after: float | None = None,
        from_gateway: bool = True,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.from_gateway = from_gateway
        self.code = code
        self.message = message
        self.request_id = request_id
        self.body = body
        text = f"HTTP {status}"
        if code:
            text += f" {code}"
        text += f": {message}" if message else ""
        if request_id:
            text += f" [request id {request_id}]"
        hint = self.hint if hint is None else hint
        if hint:
            text += f". {hint}"
        super().__init__(text)


class AuthenticationError(APIError):
    """401: the API key is wrong, expired or exhausted."""

    hint = "Check the API key (the api_key argument or OCTOVID_API_KEY)"


class PermissionDeniedError(APIError):
    """403: the key may not use this model, or the caller's IP is not allowed."""

    hint = "Check that the key has access to this model"


class InsufficientQuotaError(PermissionDeniedError):
    """403 with a quota code: the account's balance does not cover the request."""

    hint = "Top up the account's balance, then submit again"


class BadRequestError(APIError):
    """400, 413 or 422: the gateway refused the request as it was."""


class TaskNotFoundError(BadRequestError):
    """The gateway does not know this task id (400 ``task_not_exist``, or 404)."""

    hint = "Check the task id; tasks are queried on the route family they were created on"


class RateLimitError(APIError):
    """429: the key's or the upstream's rate limit was hit (see ``retry_after``)."""

    hint = "octovid waited and retried as far as its RetryPolicy allows; retry later"


class ServerError(APIError):
    """5xx: the gateway or its upstream failed."""

    @property
    def permanent(self) -> bool:
        """Whether waiting cannot help (``model_not_found``: no channel serves the model)."""
        return self.code in PERMANENT_SERVER_CODES


class TaskFailedError(OctovidError):
    """The task ended FAILED or CANCELLED on the gateway.

    Attributes:
        task: The terminal snapshot, with the gateway's reason in ``task.error``.
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        reason = task.error or "no reason given"
        super().__init__(
            f"task {task.id} ended {task.raw_status or task.status}: {reason}; "
            "submit the request again (under a new key, if it had one) for another attempt"
        )


class WaitTimeoutError(OctovidError, TimeoutError):
    """A job's deadline passed before its task finished. The task may still finish later.

    Attributes:
        task_id: The task id, or None if the create had not answered yet.
        task: The last snapshot seen, or None.
        elapsed: Seconds from the start of the job to the deadline.
    """

    def __init__(self, task_id: str | None, task: Task | None, elapsed: float) -> None:
        self.task_id = task_id
        self.task = task
        self.elapsed = elapsed
        if task_id is None:
            super().__init__(
                f"gave up after {elapsed:.1f}s, before the create answered: a create not yet "
                "sent is dropped; one already sent may still create the task, whose id then "
                "shows as Job.id"
            )
            return
        state = f" (last status {task.raw_status or task.status})" if task is not None else ""
        super().__init__(
            f"gave up waiting for task {task_id} after {elapsed:.1f}s{state}; "
            f"it may still finish: watch it again with Client.watch({task_id!r})"
        )


class JournalError(OctovidError):
    """The journal refuses an operation, e.g. a key reused for a different request."""


class DownloadError(OctovidError):
    """A video could not be downloaded and verified (an error page, a short body, no URL)."""


def snippet(body: bytes | str, limit: int = 200) -> str:
    """Return the start of a body as one readable line, for messages and reports."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _describe(body: bytes, content_type: str) -> tuple[str, str, bool]:
    """Return (code, message, is the gateway's JSON) from an error body of any shape."""
    if not body.strip():
        return "", "empty body", False
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        if "html" in content_type or body.lstrip()[:1] == b"<":
            title = _TITLE.search(body.decode("utf-8", "replace"))
            page = f" ({snippet(title.group(1), 80)})" if title else ""
            return "", f"an HTML page{page}, probably from a proxy in front of the gateway", False
        return "", snippet(body), False
    if not isinstance(data, Mapping):
        return "", snippet(body), False
    inner = data.get("error")
    if isinstance(inner, Mapping):  # the auth and routing layer, the content route
        code, message = _text(inner.get("code")), _text(inner.get("message"))
    elif isinstance(inner, str) and inner:
        code, message = _text(data.get("code")), inner
    else:  # the task routes
        code, message = _text(data.get("code")), _text(data.get("message"))
    return code, message or f"no message (body: {snippet(body, 120)})", True


def _text(value: object) -> str:
    if value is None or isinstance(value, Mapping | list):
        return ""
    return str(value)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds) or (seconds < 0 and value.lstrip().startswith("-")):
        return None  # a negative delta is not a Retry-After; a date in the past means now
    return max(0.0, seconds)


_CLASSIFYING_CODES = QUOTA_CODES | PERMANENT_SERVER_CODES | {"task_not_exist"}


def error_from_response(
    status: int,
    body: bytes,
    *,
    content_type: str = "",
    request_id: str | None = None,
    retry_after: str | None = None,
    secret: str | None = None,
) -> APIError:
    """Map an HTTP error answer of any of the gateway's shapes onto the right APIError.

    ``secret`` (the API key) is blotted out of everything the error carries, after the body has
    been read: a short key must not garble the codes the error is classified by.
    """
    code, message, from_gateway = _describe(body, content_type)
    task_gone = code == "task_not_exist" or (
        status == 404 and from_gateway and "task" in message.lower()
    )
    if secret:  # blotted out of the whole body, before anything is cut short
        body = body.replace(secret.encode(), b"***")
        message = _describe(body, content_type)[1]
        if code not in _CLASSIFYING_CODES:  # those are constants: they cannot hold the key
            code = code.replace(secret, "***")
        if request_id:
            request_id = request_id.replace(secret, "***")
    kwargs: dict[str, Any] = {
        "from_gateway": from_gateway,
        "code": code,
        "request_id": request_id,
        "body": snippet(body),
        "retry_after": parse_retry_after(retry_after),
    }
    if status == 401:
        return AuthenticationError(status, message, **kwargs)
    if status == 403:
        if code in QUOTA_CODES:
            return InsufficientQuotaError(status, message, **kwargs)
        return PermissionDeniedError(status, message, **kwargs)
    if task_gone and status in (400, 404):
        return TaskNotFoundError(status, message, **kwargs)
    if status in (400, 413, 422):
        return BadRequestError(status, message, **kwargs)
    if status == 429:
        return RateLimitError(status, message, **kwargs)
    if status >= 500:
        hint = "The model is not served by any channel of this key" if (
            code in PERMANENT_SERVER_CODES
        ) else "The gateway or its upstream failed; octovid retries what is safe to retry"
        return ServerError(status, message, hint=hint, **kwargs)
    if status == 404:
        return APIError(
            status, message, hint="The route does not exist here: check base_url", **kwargs
        )
    return APIError(status, message, **kwargs)
