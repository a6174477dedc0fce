"""Every error octovid raises: the tree, and nothing else.

The mapping of the gateway's error answers onto it is the transport's (``_transport.py``); the
decisions about them (retry, give up, uncertain) are ``_retry.py``'s.

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
    ├── JournalError                 the journal failed or refused (a key reused, other body)
    └── DownloadError                a download that could not be completed and verified
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
]

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
    """The journal failed (a database error) or refused (a key reused for another request).

    Never an answer of the gateway: a create that failed on a journal error was not sent.
    """


class DownloadError(OctovidError):
    """A video could not be downloaded and verified (an error page, a short body, no URL)."""
