"""The error tree, and the mapping of the gateway's error answers (PROTOCOL.md section 4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

import octovid
from octovid import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    CreateUncertainError,
    DownloadError,
    InsufficientQuotaError,
    JournalError,
    OctovidError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    RequestValidationError,
    ServerError,
    SoraRequest,
    Status,
    Task,
    TaskFailedError,
    TaskNotFoundError,
    TransportError,
    WaitTimeoutError,
    _retry,
)
from octovid._retry import parse_retry_after
from octovid._transport import error_from_response

REQUEST_ID = "20251108230757510141923abcdEFGH"


def task_route(code: str, message: str) -> bytes:
    """A task route's error body: ``{"code", "message", "data": null}``."""
    return json.dumps({"code": code, "message": message, "data": None}).encode()


def auth_layer(code: str, message: str) -> bytes:
    """The auth and routing layer's error body: ``{"error": {"message", "type", "code"}}``."""
    error = {"message": f"{message} (request id: {REQUEST_ID})", "type": "new_api_error",
             "code": code}
    return json.dumps({"error": error}).encode()


def content_route(message: str) -> bytes:
    """The content route's error body: ``{"error": {"message", "type"}}``."""
    return json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()


SATURATED = "上游负载已饱和\uff0c请稍后再试"  # "upstream load saturated, try later"
NGINX = b"""<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx</center>
</body>
</html>
"""

# status, body, class, code, message
ROWS = [
    (401, auth_layer("", "Invalid token"), AuthenticationError, "",
     f"Invalid token (request id: {REQUEST_ID})"),
    (401, task_route("", "Invalid token"), AuthenticationError, "", "Invalid token"),
    (403, auth_layer("access_denied", "no access to model sora-2"), PermissionDeniedError,
     "access_denied", f"no access to model sora-2 (request id: {REQUEST_ID})"),
    (403, auth_layer("", "IP not allowed"), PermissionDeniedError, "",
     f"IP not allowed (request id: {REQUEST_ID})"),
    (403, auth_layer("insufficient_user_quota", "user quota is not enough"),
     InsufficientQuotaError, "insufficient_user_quota",
     f"user quota is not enough (request id: {REQUEST_ID})"),
    (403, task_route("pre_consume_token_quota_failed", "token quota is not enough"),
     InsufficientQuotaError, "pre_consume_token_quota_failed", "token quota is not enough"),
    (503, auth_layer("model_not_found", "no channel for model veo9"), ServerError,
     "model_not_found", f"no channel for model veo9 (request id: {REQUEST_ID})"),
    (400, task_route("invalid_json", "invalid character 'x'"), BadRequestError, "invalid_json",
     "invalid character 'x'"),
    (400, task_route("missing_model", "model is required"), BadRequestError, "missing_model",
     "model is required"),
    (400, task_route("invalid_request", "prompt is required"), BadRequestError,
     "invalid_request", "prompt is required"),
    (400, task_route("invalid_size", "size 9x9 is not supported"), BadRequestError,
     "invalid_size", "size 9x9 is not supported"),
    (413, task_route("read_request_body_failed", "request body too large"), BadRequestError,
     "read_request_body_failed", "request body too large"),
    (422, task_route("invalid_request", "duration out of range"), BadRequestError,
     "invalid_request", "duration out of range"),
    (400, task_route("task_not_exist", "task_not_exist"), TaskNotFoundError, "task_not_exist",
     "task_not_exist"),
    (404, content_route("Task not found"), TaskNotFoundError, "", "Task not found"),
    (400, content_route("Task is not completed yet, current status: IN_PROGRESS"),
     BadRequestError, "", "Task is not completed yet, current status: IN_PROGRESS"),
    (429, task_route("fail_to_fetch_task", SATURATED), RateLimitError, "fail_to_fetch_task",
     SATURATED),
    (429, auth_layer("token_concurrency_limit_reached", "too many concurrent requests"),
     RateLimitError, "token_concurrency_limit_reached",
     f"too many concurrent requests (request id: {REQUEST_ID})"),
    (500, task_route("do_request_failed", "upstream error: EOF"), ServerError,
     "do_request_failed", "upstream error: EOF"),
    (502, task_route("fail_to_fetch_task", "bad response status code 502"), ServerError,
     "fail_to_fetch_task", "bad response status code 502"),
    (503, task_route("", "The service is temporarily unavailable"), ServerError, "",
     "The service is temporarily unavailable"),
]


@pytest.mark.parametrize(
    ("status", "body", "cls", "code", "message"),
    ROWS,
    ids=[f"{row[0]}-{row[2].__name__}-{i}" for i, row in enumerate(ROWS)],
)
def test_gateway_errors_map_to_the_right_class(status, body, cls, code, message):
    """Each JSON error row of the protocol maps to its class, status, code and message."""
    error = error_from_response(status, body, content_type="application/json")
    assert type(error) is cls
    assert isinstance(error, APIError)
    assert (error.status, error.code, error.message) == (status, code, message)
    assert error.from_gateway is True
    assert error.body == body.decode()
    text = str(error)
    assert text.startswith(f"HTTP {status}")
    assert code in text
    assert message in text


@pytest.mark.parametrize(
    ("status", "body", "content_type", "cls", "described"),
    [
        (429, b"", "", RateLimitError, "empty body"),
        (503, b"  \r\n", "text/plain", ServerError, "empty body"),
        (502, NGINX, "text/html", ServerError, "HTML page (502 Bad Gateway)"),
        (504, b"<html><body>timeout</body></html>", "", ServerError, "HTML page"),
        (500, b"upstream connect error or disconnect/reset before headers", "text/plain",
         ServerError, "upstream connect error or disconnect/reset before headers"),
        (400, b'["not", "an", "object"]', "application/json", BadRequestError,
         '["not", "an", "object"]'),
        (401, b"Unauthorized", "text/plain", AuthenticationError, "Unauthorized"),
        (403, b"<html><title>Forbidden</title></html>", "text/html", PermissionDeniedError,
         "HTML page (Forbidden)"),
    ],
    ids=["429-empty", "503-blank", "502-nginx", "504-html-no-type", "500-text", "400-list",
         "401-text", "403-html"],
)
def test_bodies_that_are_not_gateway_json(status, body, content_type, cls, described):
    """Empty, HTML and plain-text bodies map by status, not from_gateway, with a description."""
    error = error_from_response(status, body, content_type=content_type)
    assert type(error) is cls
    assert (error.status, error.code, error.from_gateway) == (status, "", False)
    assert described in error.message
    assert described in str(error)


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (404, content_route("Task not found"), TaskNotFoundError),
        (404, NGINX.replace(b"502 Bad Gateway", b"404 Not Found"), APIError),
        (404, b"", APIError),
        (409, task_route("conflict", "conflict"), APIError),
        (418, b"", APIError),
    ],
)
def test_other_statuses(status, body, cls):
    """A JSON 404 is an unknown task; an HTML or empty 404 and other statuses are APIErrors."""
    error = error_from_response(status, body)
    assert type(error) is cls
    assert error.status == status


def test_a_json_404_for_a_missing_route_is_not_an_unknown_task():
    """The routing layer's JSON 404 for a wrong URL points at base_url, not at the task id."""
    body = json.dumps({"error": {"message": "Invalid URL (GET /v1/v1/video/query)",
                                 "type": "invalid_request_error", "code": ""}}).encode()
    error = error_from_response(404, body)
    assert type(error) is APIError
    assert "base_url" in str(error)


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (400, task_route("task_not_exist", "task_not_exist"), TaskNotFoundError, "task_not_exist"),
        (403, auth_layer("pre_consume_token_quota_failed", "quota"), InsufficientQuotaError,
         "pre_consume_token_quota_failed"),
        (503, auth_layer("model_not_found", "no channel"), ServerError, "model_not_found"),
    ],
)
def test_a_short_key_is_blotted_out_without_garbling_the_classification(status, body, cls, code):
    """Redacting a one-letter key hides it in messages but leaves the codes errors go by."""
    error = error_from_response(status, body, secret="k")
    assert type(error) is cls
    assert error.code == code
    assert "k" not in error.message and "k" not in error.body


def test_a_key_echoed_in_an_error_body_is_blotted_out():
    """A gateway or proxy that echoes the key in an error never puts it into the exception."""
    key = "sk-live-0123456789abcdef"
    body = task_route(f"bad_{key}", f"token {key} is invalid")
    error = error_from_response(400, body, request_id=f"id-{key}", secret=key)
    assert key not in str(error) and key not in error.body and key not in error.code
    assert key not in (error.request_id or "")
    assert "***" in error.message


@pytest.mark.parametrize("at", [150, 180, 195], ids=["inside", "across-the-cut", "at-the-cut"])
def test_a_key_cut_off_by_the_snippet_leaves_no_part_of_itself(at):
    """The key is blotted out before the body is shortened: no prefix of it survives the cut."""
    key = "sk-live-" + "0123456789abcdefghijklmnopqrstuv"
    body = task_route("bad_request", "x" * at + key + " trailing words")
    error = error_from_response(400, body, secret=key)
    for text in (str(error), error.body, error.message):
        assert key[:12] not in text


def test_an_html_404_points_at_the_base_url():
    """A 404 that is not the gateway's JSON says the route does not exist: check base_url."""
    error = error_from_response(404, b"<html><title>404 Not Found</title></html>")
    assert "base_url" in str(error)
    assert error.from_gateway is False


@pytest.mark.parametrize(
    ("status", "body", "advice"),
    [
        (401, auth_layer("", "Invalid token"), "API key"),
        (403, auth_layer("access_denied", "denied"), "access to this model"),
        (403, auth_layer("insufficient_user_quota", "quota"), "balance"),
        (400, task_route("task_not_exist", "task_not_exist"), "task id"),
        (429, b"", "retry later"),
        (503, auth_layer("model_not_found", "no channel"), "not served"),
        (500, task_route("do_request_failed", "EOF"), "retries what is safe"),
    ],
)
def test_messages_say_what_to_do(status, body, advice):
    """The message of each kind of error carries advice on what to do about it."""
    assert advice in str(error_from_response(status, body))


@pytest.mark.parametrize(
    ("body", "permanent"),
    [
        (auth_layer("model_not_found", "no channel"), True),
        (task_route("model_not_found", "no channel"), True),
        (task_route("do_request_failed", "EOF"), False),
        (b"", False),
    ],
)
def test_only_model_not_found_is_a_permanent_server_error(body, permanent):
    """A 503 model_not_found will not mend by waiting; other 5xx answers may."""
    error = error_from_response(503, body)
    assert isinstance(error, ServerError)
    assert _retry.permanent(error) is permanent


def test_request_id_is_kept_and_shown():
    """The X-Oneapi-Request-Id given is kept on the error and named in its message."""
    error = error_from_response(500, task_route("do_request_failed", "EOF"), request_id="rid-42")
    assert error.request_id == "rid-42"
    assert "rid-42" in str(error)
    assert error_from_response(500, b"").request_id is None


def test_body_is_a_short_one_line_snippet():
    """``.body`` keeps the start of the body on one line, at most 200 characters."""
    error = error_from_response(500, b"x" * 1000)
    assert error.body == "x" * 199 + "…"
    assert error_from_response(502, NGINX).body.startswith("<html> <head><title>502 Bad Gateway")
    assert "\n" not in error_from_response(502, NGINX).body


# --- Retry-After ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), (" 30 ", 30.0), ("1.5", 1.5), ("0", 0.0),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: go now
     (None, None), ("", None), ("soon", None), ("nan", None), ("inf", None),
     ("Mon, 99 Foo 2020 00:00:00 GMT", None)],
)
def test_retry_after_is_parsed_from_the_header(header, seconds):
    """Retry-After is read as delta-seconds or an HTTP date; absent or garbage gives None."""
    assert parse_retry_after(header) == seconds
    assert error_from_response(429, b"", retry_after=header).retry_after == seconds


def test_retry_after_as_a_future_http_date():
    """An HTTP date two minutes ahead gives about 120 seconds."""
    header = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    error = error_from_response(429, task_route("fail_to_fetch_task", SATURATED),
                                retry_after=header)
    assert isinstance(error, RateLimitError)
    assert error.retry_after is not None
    assert 115 <= error.retry_after <= 120


def test_retry_after_is_kept_on_other_statuses():
    """A Retry-After on a 503 is kept too, for the retry logic to honour."""
    assert error_from_response(503, b"", retry_after="12").retry_after == 12.0


@pytest.mark.parametrize(
    "body",
    [b"{}", task_route("", ""), b'{"error": {"message": "", "type": "new_api_error", "code": ""}}'],
    ids=["empty-object", "task-route", "auth-layer"],
)
def test_a_json_error_without_a_message_is_still_described(body):
    """APIError.message describes the body when the gateway gave no message (per its docstring)."""
    error = error_from_response(400, body)
    assert error.message
    assert str(error) != "HTTP 400"


# --- the class tree -------------------------------------------------------------------------

TREE = [
    (ConfigError, OctovidError),
    (RequestValidationError, OctovidError),
    (RequestValidationError, ValueError),
    (ProtocolError, OctovidError),
    (TransportError, OctovidError),
    (CreateUncertainError, TransportError),
    (APIError, OctovidError),
    (AuthenticationError, APIError),
    (PermissionDeniedError, APIError),
    (InsufficientQuotaError, PermissionDeniedError),
    (BadRequestError, APIError),
    (TaskNotFoundError, BadRequestError),
    (RateLimitError, APIError),
    (ServerError, APIError),
    (TaskFailedError, OctovidError),
    (WaitTimeoutError, OctovidError),
    (WaitTimeoutError, TimeoutError),
    (JournalError, OctovidError),
    (DownloadError, OctovidError),
    (OctovidError, Exception),
]


@pytest.mark.parametrize(
    ("cls", "parent"), TREE, ids=[f"{c.__name__}<{p.__name__}" for c, p in TREE]
)
def test_the_error_tree(cls, parent):
    """Each error sits where API.md draws it in the tree."""
    assert issubclass(cls, parent)


@pytest.mark.parametrize(
    ("cls", "not_parent"),
    [(TaskNotFoundError, RateLimitError), (ServerError, BadRequestError),
     (RateLimitError, ServerError), (APIError, TransportError), (TaskFailedError, APIError),
     (ProtocolError, APIError), (InsufficientQuotaError, BadRequestError)],
)
def test_the_error_tree_branches_are_separate(cls, not_parent):
    """Errors of different branches do not catch each other."""
    assert not issubclass(cls, not_parent)


def test_every_public_error_is_an_octovid_error():
    """Every ``*Error`` in octovid.__all__ derives from OctovidError."""
    errors = [getattr(octovid, name) for name in octovid.__all__ if name.endswith("Error")]
    assert len(errors) >= 18
    assert all(issubclass(error, OctovidError) for error in errors)


# --- errors built by octovid itself ---------------------------------------------------------


def failed_task(**changes: object) -> Task:
    """A FAILED snapshot of a Sora task."""
    fields: dict[str, object] = {
        "id": "sora-2:task_01k9008rhbefnt3rb1g9szxdwr", "status": Status.FAILED,
        "raw_status": "failed", "error": "content policy violation",
    }
    fields.update(changes)
    return Task(**fields)  # type: ignore[arg-type]


def test_task_failed_error_names_the_task_status_and_reason():
    """TaskFailedError carries the task, and its message names the id, status and reason."""
    task = failed_task()
    error = TaskFailedError(task)
    assert error.task is task
    assert str(error) == (
        "task sora-2:task_01k9008rhbefnt3rb1g9szxdwr ended failed: content policy violation; "
        "submit the request again (under a new key, if it had one) for another attempt"
    )


def test_task_failed_error_without_reason_says_so():
    """A cancelled task without a reason gives a message that says no reason was given."""
    error = TaskFailedError(failed_task(status=Status.CANCELLED, raw_status="", error=None))
    assert "ended cancelled" in str(error)
    assert "no reason given" in str(error)


def test_wait_timeout_error_names_the_task_and_what_to_do():
    """WaitTimeoutError keeps id, task and elapsed; its message says how to resume watching."""
    task = Task(id="grok:05c8", status=Status.PROCESSING, raw_status="video_generating")
    error = WaitTimeoutError("grok:05c8", task, 125.04)
    assert (error.task_id, error.task, error.elapsed) == ("grok:05c8", task, 125.04)
    assert isinstance(error, TimeoutError)
    text = str(error)
    for fragment in ("task grok:05c8", "125.0s", "video_generating", "Client.watch"):
        assert fragment in text


def test_wait_timeout_error_before_the_create_answered():
    """A timeout before the create answered names the create and points at Job.id, not watch."""
    error = WaitTimeoutError(None, None, 3.0)
    assert (error.task_id, error.task) == (None, None)
    assert "the create" in str(error) and "Job.id" in str(error)
    assert "last status" not in str(error) and "Client.watch" not in str(error)


def test_protocol_and_transport_errors_keep_their_facts():
    """ProtocolError keeps status and body; TransportError and CreateUncertainError keep sent."""
    protocol = ProtocolError("no id", status=200, body='{"status": "ok"}')
    assert (protocol.status, protocol.body, str(protocol)) == (200, '{"status": "ok"}', "no id")
    assert TransportError("refused", sent=False).sent is False
    request = SoraRequest("a cat")
    uncertain = CreateUncertainError("read timeout after send", request=request)
    assert (uncertain.request, uncertain.sent) == (request, True)


def test_request_validation_error_fields():
    """RequestValidationError keeps field, value and allowed, and names all three."""
    error = RequestValidationError("duration", 12, "one of 10, 15, 25")
    assert (error.field, error.value, error.allowed) == ("duration", 12, "one of 10, 15, 25")
    assert str(error) == "duration=12 is not allowed: one of 10, 15, 25"
