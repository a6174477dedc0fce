"""Errors in the words of the command line: its options and commands, not Python's API.

The library's messages advise a Python caller (``api_key=``, ``Client.watch(...)``); a shell
user needs ``--api-key`` and ``octovid wait ID``. Each error becomes one line here.
"""

from __future__ import annotations

import logging
import re

import octovid

__all__ = ["LogFilter", "describe", "plain_transport"]

_WATCH = re.compile(r"Client\.watch\((['\"])(.+?)\1\)")
_ANY_WATCH = re.compile(r"(?:with )?Client\.watch\(task id\)")
_CONNECT = re.compile(r"^(cannot connect to|no answer from) (\S+?):? (\w+) (.*)$", re.DOTALL)


def _api(exc: octovid.APIError, hint: str) -> str:
    text = f"HTTP {exc.status}"
    if exc.code:
        text += f" {exc.code}"
    if exc.message:
        text += f": {exc.message}"
    if exc.request_id and exc.request_id not in (exc.message or ""):
        text += f" [request id {exc.request_id}]"
    return f"{text}. {hint}" if hint else text


def plain_transport(exc: octovid.TransportError) -> str:
    """A connection failure in one plain line, without aiohttp's class names."""
    text = str(exc)
    match = _CONNECT.match(text)
    if match is None:
        return text
    what, where, kind, detail = match.groups()
    lowered = detail.lower()
    if "connect call failed" in lowered or "refused" in lowered:
        why = "connection refused"
    elif "name or service not known" in lowered or "nodename nor servname" in lowered or (
        "no address" in lowered or "getaddrinfo" in lowered or "name resolution" in lowered
    ):
        why = "host not found"
    elif "timeout" in kind.lower() or "timeout" in lowered or "timed out" in lowered:
        why = "timed out"
    elif "ssl" in kind.lower() or "certificate" in lowered:
        why = "TLS failed: " + detail.split("[")[-1].rstrip("]")[:80]
    else:
        why = detail.strip()[:100] or kind
    return f"{what} {where} ({why})"


def describe(exc: BaseException, *, task_id: str | None = None) -> str:
    """One line for an error, with advice in the command line's words."""
    if isinstance(exc, octovid.AuthenticationError):
        return _api(exc, "The gateway refused the API key: check --api-key or OCTOVID_API_KEY")
    if isinstance(exc, octovid.InsufficientQuotaError):
        return _api(exc, "The account's balance is too low: top it up, then run the command "
                         "again")
    if isinstance(exc, octovid.PermissionDeniedError):
        return _api(exc, "The key may not use this model")
    if isinstance(exc, octovid.TaskNotFoundError):
        which = f"task {task_id!r}" if task_id else "this task"
        return _api(exc, f"The gateway does not know {which}: check the id")
    if isinstance(exc, octovid.RateLimitError):
        return _api(exc, "The gateway kept refusing for its rate limit: try again later, or "
                         "lower --rate-limit")
    if isinstance(exc, octovid.ServerError):
        return _api(exc, "No channel of the gateway serves this model for this key"
                    if exc.code == "model_not_found" else
                    "The gateway or its upstream failed; try again later")
    if isinstance(exc, octovid.APIError):
        return _api(exc, "No such route here: check --base-url or OCTOVID_BASE_URL"
                    if exc.status == 404 else "")
    if isinstance(exc, octovid.WaitTimeoutError):
        after = f"{exc.elapsed:.1f}" if exc.elapsed < 10 else f"{exc.elapsed:.0f}"
        if exc.task_id is None:
            return f"gave up after {after} s, before the create answered"
        state = f" (last status {exc.task.raw_status or exc.task.status})" if exc.task else ""
        return (f"gave up waiting for task {exc.task_id} after {after} s{state}; it may still "
                f"finish: octovid wait {exc.task_id}")
    if isinstance(exc, octovid.TaskFailedError):
        return f"task {exc.task.id} {exc.task.raw_status or 'failed'}: " + (
            exc.task.error or "no reason given"
        )
    if isinstance(exc, octovid.CreateUncertainError):
        return str(exc)
    if isinstance(exc, octovid.TransportError):
        return plain_transport(exc) + (
            "; check --base-url or OCTOVID_BASE_URL" if str(exc).startswith("cannot connect")
            else ""
        )
    if isinstance(exc, octovid.ConfigError):
        text = str(exc).replace("base_url ", "--base-url ")
        return text.replace("set base_url", "set --base-url")
    return translate(str(exc)) or type(exc).__name__


def translate(text: str) -> str:
    """The library's advice to Python callers, in the command line's words."""
    text = _WATCH.sub(lambda m: f"`octovid wait {m.group(2)}`", text)
    text = _ANY_WATCH.sub("with `octovid wait TASK_ID`", text)
    return text.replace("Journal.forget(key)", "--retry-uncertain")


class LogFilter(logging.Filter):
    """The library's log lines, for a shell user: no duplicates of what the CLI reports.

    The watcher logs a job it gives up on; the command reports that job's error itself.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR and str(record.msg).startswith(
            "octovid: giving up on task"
        ):
            return logging.getLogger("octovid").isEnabledFor(logging.INFO)
        record.msg, record.args = translate(record.getMessage()), None
        return True
