"""The only module that touches aiohttp: the session, auth, JSON, streams and error mapping.

The transport sends one request and reports what happened: an :class:`Answer`, a streamed
:class:`Body`, or an error of octovid's tree. It never decides to retry (``_retry`` does), and
it never sends a request twice: the session it creates does not resend a request whose
keep-alive connection dropped (aiohttp's default for idempotent methods does, behind the rate
limiter's back). A session lent by the user keeps its own behaviour: with aiohttp's defaults,
such a GET may reach the gateway twice while octovid counts it once.

The key goes only to the gateway's own origin (scheme, host and port), in a header of each
request (never on the session, which may be the user's and may be used for other hosts), and
nothing the transport raises carries it: bodies are redacted before they are kept, and aiohttp's
own exceptions (whose request info holds the headers) are not chained.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

import aiohttp
from yarl import URL

from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    InsufficientQuotaError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TaskNotFoundError,
    TransportError,
)
from ._retry import PERMANENT_SERVER_CODES, parse_retry_after
from ._text import redact, snippet

if TYPE_CHECKING:
    from ._requests import Upload

__all__ = ["Answer", "Body", "NotVideo", "SourceGone", "Transport", "gateway_url"]

_MAX_JSON = 4 * 1024 * 1024  # answers larger than this are not task objects
_CHUNK = 256 * 1024
QUOTA_CODES = frozenset({"insufficient_user_quota", "pre_consume_token_quota_failed"})
_CLASSIFYING_CODES = QUOTA_CODES | PERMANENT_SERVER_CODES | {"task_not_exist"}
_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_PLAIN = re.compile(r"[A-Za-z0-9._~:-]*").fullmatch  # task ids: only ':' needs escaping
_STAMP = re.compile(rb'"status_update_time":\s*(\d{1,16})')
_FAILURES = (aiohttp.ClientError, OSError, TimeoutError)  # no answer: TransportError

try:
    _USER_AGENT = f"octovid/{version('octovid')}"
except PackageNotFoundError:  # running from a source tree
    _USER_AGENT = "octovid"


class SourceGone(Exception):
    """A download source (a signed CDN URL) no longer serves the video: expired, or gone."""


class NotVideo(Exception):
    """A download source answered with something that is not a video."""


def gateway_url(base_url: str) -> URL:
    """Check and normalise a base URL: http(s), a host, no query or fragment."""
    try:
        url = URL(base_url.strip())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"base_url {base_url!r} is not a URL") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"base_url {base_url!r} must be an http:// or https:// URL with a host, "
            "e.g. https://octopusx.ai"
        )
    if url.query_string or url.fragment or url.user or url.password:
        raise ConfigError(f"base_url {base_url!r} must not carry credentials, a query or fragment")
    return url.with_path(url.path.rstrip("/"))


class Answer:
    """A decoded JSON answer of the gateway, and the bytes it came as."""

    __slots__ = ("body", "poll_after", "request_id", "same", "stamps", "status", "text")

    def __init__(
        self, status: int, body: Mapping[str, Any], request_id: str | None,
        poll_after: float | None = None, *, text: bytes = b"", same: bool = False,
        stamps: tuple[int, int] | None = None,
    ) -> None:
        self.status = status
        self.body = body  #: the decoded object; empty when ``same`` or ``stamps``
        self.request_id = request_id
        self.poll_after = poll_after  #: seconds the server suggests before the next poll
        self.text = text  #: the body as received
        #: the body is byte for byte the ``known`` one the caller passed: it was not decoded
        self.same = same
        #: (known, new): the body is the ``known`` one but for its one ``status_update_time``
        #: number, these two (not decoded: :meth:`Transport.decode` reads it if need be)
        self.stamps = stamps


def restamped(text: bytes, known: bytes) -> tuple[int, int] | None:
    """The two ``status_update_time`` numbers if ``text`` is ``known`` but for that one number.

    A task polled after the gateway's refresh, with nothing new to say, differs from its last
    answer by that stamp alone: comparing the bytes around it costs less than decoding them.
    """
    new = _STAMP.search(text)
    old = _STAMP.search(known) if new is not None else None
    if new is None or old is None:
        return None
    start, end = new.span(1)
    known_start, known_end = old.span(1)
    if (text[:start] != known[:known_start] or text[end:] != known[known_end:]
            or _STAMP.search(text, end) is not None):
        return None
    return int(known[known_start:known_end]), int(text[start:end])


# The ``sent`` callback of the request going out in this task, for _Request.send.
_SENT: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "octovid_sent", default=None
)


class _Request(aiohttp.ClientRequest):
    """aiohttp's request, telling ``_SENT`` when its headers are out.

    One call once the headers are written, instead of a trace config: with one, aiohttp
    builds and awaits a signal for every step of every request (start, connection, headers,
    end), which cost more than octovid's own work on a poll.
    """

    async def send(self, conn: Any) -> aiohttp.ClientResponse:
        response = await super().send(conn)  # the status line and headers are written
        sent = _SENT.get()
        if sent is not None:
            sent()
        return response


class Body:
    """A streamed answer of a download source: status, what it says it holds, its bytes."""

    __slots__ = ("_response", "_transport", "content_range", "kind", "length", "status")

    def __init__(self, transport: Transport, response: aiohttp.ClientResponse) -> None:
        self._transport = transport
        self._response = response
        self.status = response.status
        #: the media type, lower case, without parameters
        self.kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        self.length = response.content_length  #: Content-Length, if sent
        self.content_range = response.headers.get("Content-Range")

    async def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the body (for describing a page that is not a video)."""
        with self._transport._translate(self._response.url):
            return await self._response.content.read(limit)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk."""
        with self._transport._translate(self._response.url):
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk


class Transport:
    """Sends requests to one gateway with one key, over an owned or a borrowed session."""

    __slots__ = (
        "_base", "_get_headers", "_key", "_origin", "_owned", "_parts", "_session", "_timeout",
    )

    def __init__(
        self,
        base_url: URL,
        api_key: str,
        *,
        timeout: float,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._base = base_url
        self._origin = (base_url.scheme, base_url.host, base_url.port)
        self._parts = (base_url.scheme, base_url.raw_authority, base_url.raw_path.rstrip("/"))
        self._key = api_key
        self._get_headers = self._headers(json_body=False)  # built once: a poll's headers
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owned = session is None

    def __repr__(self) -> str:
        return f"<Transport {self._base} owned_session={self._owned}>"

    @property
    def base_url(self) -> URL:
        """The gateway's base URL."""
        return self._base

    def url(self, path: str, **query: str) -> URL:
        """The gateway URL of ``path``; query values are fully percent-encoded (ids hold ':')."""
        text = "&".join([
            f"{k}={v.replace(':', '%3A') if _PLAIN(v) else quote(v, safe='')}"
            for k, v in query.items()
        ]) if query else ""
        scheme, authority, prefix = self._parts  # built, not parsed: the parts are encoded
        return URL.build(scheme=scheme, authority=authority, path=prefix + path,
                         query_string=text, encoded=True)

    def same_origin(self, url: URL) -> bool:
        """Whether ``url`` is on the gateway's own origin (the only one that gets the key)."""
        return url.absolute and (url.scheme, url.host, url.port) == self._origin

    def resolve(self, reference: str) -> URL | None:
        """An absolute http(s) URL for a result URL the gateway gave, else None.

        A relative reference (``/v1/videos/x/content``, ``//cdn.example/x.mp4``) is read against
        the gateway's address; anything else that is not http or https is no place to download from.
        """
        try:
            url = URL(reference.strip())
            if not url.scheme:  # a path, or protocol-relative (//cdn.example/x.mp4)
                url = self._base.join(url)
        except (ValueError, TypeError):
            return None
        return url if url.scheme in ("http", "https") and url.host else None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No trust_env: it reads ~/.netrc and the proxy variables in a thread on every
            # request. Pass a session of your own to go through a proxy.
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                headers={"User-Agent": _USER_AGENT},
                request_class=_Request,
            )
            # aiohttp resends an idempotent request once when a reused connection drops; every
            # request must pass the rate limiter, so failures come back to octovid instead.
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
            self._session = session
        return self._session

    @contextlib.contextmanager
    def _sending(self, sent: Callable[[], None] | None) -> Iterator[None]:
        """Have ``sent`` called when the headers of the request made inside are out.

        A borrowed session has no such hook: ``sent`` is called now, just before sending.
        """
        if sent is not None and not self._owned:
            sent()
            sent = None
        token = _SENT.set(sent)
        try:
            yield
        finally:
            _SENT.reset(token)

    def _headers(self, *, json_body: bool) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        if json_body:
            headers["Content-Type"] = "application/json"
        return headers

    async def request(
        self,
        method: str,
        url: URL,
        *,
        payload: Mapping[str, Any] | None = None,
        files: Sequence[Upload] = (),
        sent: Callable[[], None] | None = None,
        known: bytes | None = None,
    ) -> Answer:
        """Send one request to the gateway and decode its JSON object answer.

        The body is ``payload`` as JSON, or, with ``files``, a multipart form of ``payload``'s
        fields (text; lists and objects as JSON) and the files. ``sent`` is called once the
        request is on the wire (see ``Slot.sent``). A success answer whose bytes are
        ``known`` (the last answer the caller got) is not decoded again: ``Answer.same``.

        Raises:
            APIError: The gateway answered with an HTTP error (the subclass says which).
            ProtocolError: A success answer that is not a JSON object.
            TransportError: No answer; ``sent`` says whether the request may have arrived.
        """
        assert self.same_origin(url), "the key goes only to the gateway"
        data: bytes | aiohttp.FormData | None
        if files:
            data = _form(payload or {}, files)
        else:
            data = None if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        session = self._get_session()
        # What _translate and _sending do, written out: two context managers a request cost
        # more than this function's own work on a poll.
        if sent is not None and not self._owned:
            sent()
            sent = None
        token = _SENT.set(sent)
        try:
            async with session.request(
                method,
                url,
                data=data,
                headers=self._get_headers if data is None else self._headers(
                    json_body=isinstance(data, bytes)),
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                body = await self._read_capped(response)
                headers = response.headers
                request_id = headers.get("X-Oneapi-Request-Id")
                if response.status >= 300:
                    raise self._error(response, body, request_id)
                hint = _poll_after(headers.get("openai-poll-after-ms"))
        except _FAILURES as exc:
            _raise_unchained(self._failure(url, exc))
        finally:
            _SENT.reset(token)
        if known is not None:
            if body == known:
                return Answer(response.status, {}, request_id, hint, text=body, same=True)
            stamps = restamped(body, known)
            if stamps is not None:
                return Answer(response.status, {}, request_id, hint, text=body, stamps=stamps)
        return Answer(response.status, self.decode(body, response.status), request_id, hint,
                      text=body)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        url: URL,
        *,
        offset: int = 0,
        read_timeout: float | None = None,
        sent: Callable[[], None] | None = None,
    ) -> AsyncIterator[Body]:
        """Open a GET for download; the key is sent only if ``url`` is the gateway's.

        Redirects are followed by hand, so that the key never follows one off the gateway.
        The body is yielded for 200, 206 and 416 answers; others raise: the gateway's as
        ``request`` does, a CDN's as :class:`SourceGone` (401, 403, 404, 410: an expired
        signature), TransportError (429, 5xx: try again) or :class:`NotVideo`.
        """
        session = self._get_session()
        limit = self._timeout.total
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=limit, sock_read=read_timeout or limit
        )
        for _ in range(5):
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            gateway = self.same_origin(url)
            if gateway:
                headers.update(self._headers(json_body=False))
                headers["Accept"] = "*/*"
            with self._translate(url), self._sending(sent if gateway else None):
                response = await session.get(
                    url, headers=headers, timeout=timeout, allow_redirects=False,
                )
            try:
                status = response.status
                if status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                    url = url.join(URL(response.headers["Location"]))
                    continue
                if status not in (200, 206, 416):
                    raise await self._unusable(response, gateway)
                yield Body(self, response)
                return
            finally:
                response.release()
        raise TransportError(f"too many redirects downloading {url.with_query(None)}", sent=True)

    async def _unusable(self, response: aiohttp.ClientResponse, gateway: bool) -> Exception:
        """The error an unusable download answer stands for."""
        with self._translate(response.url):
            body = redact(await response.content.read(64 * 1024), self._key)
        if gateway:
            return self._error(response, body, response.headers.get("X-Oneapi-Request-Id"))
        status, where = response.status, _where(response.url)
        if status in (401, 403, 404, 410):
            return SourceGone(f"{where}: HTTP {status}: {snippet(body, 120)}")
        if status == 429 or status >= 500:
            return TransportError(f"{where} answered HTTP {status}", sent=True)
        return NotVideo(f"{where}: HTTP {status}: {snippet(body, 120)}")

    def _error(
        self, response: aiohttp.ClientResponse, body: bytes, request_id: str | None
    ) -> Exception:
        if 300 <= response.status < 400:
            return ConfigError(
                f"the gateway redirected to {response.headers.get('Location', '?')}: "
                "set base_url to the final address"
            )
        return error_from_response(
            response.status,
            body,
            content_type=response.headers.get("Content-Type", ""),
            request_id=request_id,
            retry_after=response.headers.get("Retry-After"),
            secret=self._key,
        )

    @contextlib.contextmanager
    def _translate(self, url: URL) -> Iterator[None]:
        """Map aiohttp's and the socket's failures onto TransportError, in one place.

        The new error is unchained (no ``__cause__``, no ``__context__``): aiohttp's errors
        keep the request's headers, and with them the key.
        """
        try:
            yield
        except _FAILURES as exc:
            error = self._failure(url, exc)
        else:
            return
        _raise_unchained(error)

    def _failure(self, url: URL, exc: BaseException) -> TransportError:
        """The TransportError of aiohttp's or the socket's failure ``exc`` on ``url``."""
        where = f"{url.scheme}://{url.host}:{url.port}"
        if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            return TransportError(f"cannot connect to {where}: {self._plain(exc)}", sent=False)
        return TransportError(f"no answer from {where}: {self._plain(exc)}", sent=True)

    def _plain(self, exc: BaseException) -> str:
        text = redact(str(exc).encode(), self._key).decode("utf-8", "replace")
        return f"{exc.__class__.__name__} {text or '(no detail)'}"

    async def _read_capped(
        self, response: aiohttp.ClientResponse, *, limit: int = _MAX_JSON
    ) -> bytes:
        """Read a body of at most ``limit`` bytes; beyond it, fail."""
        length = response.content_length
        if length is not None and length <= limit and (
            "Content-Encoding" not in response.headers
        ):  # the parser stops at the length it was told: one read, no chunk loop
            return await response.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise ProtocolError(
                    f"the answer is larger than {limit} bytes; not a task object",
                    status=response.status,
                    body=snippet(redact(b"".join(chunks)[:4096], self._key)),
                )
        return b"".join(chunks)

    def decode(self, body: bytes, status: int = 200) -> Mapping[str, Any]:
        """The JSON object of an answer's ``body``.

        Raises:
            ProtocolError: The body is not a JSON object.
        """
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            what = "an empty body" if not body.strip() else "a body that is not JSON"
            error = ProtocolError(
                f"the gateway answered HTTP {status} with {what}", status=status,
                body=snippet(redact(body, self._key)),
            )
        else:
            if isinstance(data, dict):
                return data
            error = ProtocolError(
                f"the gateway answered HTTP {status} with JSON that is not an object",
                status=status, body=snippet(redact(body, self._key)),
            )
        raise error

    async def close(self) -> None:
        """Close the session if this transport created it; a borrowed one stays open."""
        session, self._session = self._session, None
        if session is not None and self._owned:
            await session.close()


def _form(payload: Mapping[str, Any], files: Sequence[Upload]) -> aiohttp.FormData:
    """A multipart form: the payload's fields as text, then the files."""
    form = aiohttp.FormData()
    for name, value in payload.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        form.add_field(name, text)
    for upload in files:
        form.add_field(upload.field, upload.content, filename=upload.filename,
                       content_type=upload.content_type)
    return form


def _poll_after(value: str | None) -> float | None:
    """Seconds from an ``openai-poll-after-ms`` header, or None."""
    try:
        millis = float(value) if value else None
    except ValueError:
        return None
    return millis / 1000 if millis is not None and 0 < millis < 3_600_000 else None


def _raise_unchained(error: TransportError) -> NoReturn:
    """Raise ``error`` with no ``__cause__`` or ``__context__``: aiohttp's errors keep the
    request's headers, and with them the key."""
    try:
        raise error
    finally:  # set as it leaves: a raise in an except block chains the error it handles
        error.__cause__ = error.__context__ = None


def _where(url: URL) -> str:
    return f"{url.scheme}://{url.host}{url.path}"


# -- the mapping of error answers ------------------------------------------------------------


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
        code, message = _code(inner.get("code")), _code(inner.get("message"))
    elif isinstance(inner, str) and inner:
        code, message = _code(data.get("code")), inner
    else:  # the task routes
        code, message = _code(data.get("code")), _code(data.get("message"))
    return code, message or f"no message (body: {snippet(body, 120)})", True


def _code(value: object) -> str:
    if value is None or isinstance(value, Mapping | list):
        return ""
    return str(value)


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
        body = redact(body, secret)
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
