"""The only module that touches aiohttp: the session, auth, JSON, and the mapping of failures.

The transport sends one request and reports what happened; it never decides to retry. The key
goes only to the gateway's own origin, in a header of each gateway request (never on the
session, which may be the user's and may be used for other hosts).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from ._errors import ConfigError, ProtocolError, TransportError, error_from_response, snippet

__all__ = ["Answer", "Transport", "gateway_url"]

_MAX_JSON = 4 * 1024 * 1024  # answers larger than this are not task objects

try:
    _USER_AGENT = f"octovid/{version('octovid')}"
except PackageNotFoundError:  # running from a source tree
    _USER_AGENT = "octovid"


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
    """A decoded JSON answer of the gateway."""

    __slots__ = ("body", "request_id", "status")

    def __init__(self, status: int, body: Mapping[str, Any], request_id: str | None) -> None:
        self.status = status
        self.body = body
        self.request_id = request_id


class Transport:
    """Sends requests to one gateway with one key, over an owned or a borrowed session."""

    __slots__ = ("_base", "_key", "_owned", "_session", "_timeout")

    def __init__(
        self,
        base_url: URL,
        api_key: str,
        *,
        timeout: float,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._base = base_url
        self._key = api_key
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
        text = str(self._base) + path
        if query:
            text += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        return URL(text, encoded=True)

    def same_origin(self, url: URL) -> bool:
        """Whether ``url`` is on the gateway's own origin (the only one that gets the key)."""
        return url.absolute and url.origin() == self._base.origin()

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
            tracing = aiohttp.TraceConfig()
            tracing.on_request_headers_sent.append(_on_headers_sent)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                headers={"User-Agent": _USER_AGENT},
                trace_configs=[tracing],
            )
        return self._session

    def _tracing(self, sent: Callable[[], None] | None) -> Callable[[], None] | None:
        """What to pass as ``trace_request_ctx``: ``sent`` is called when the headers are out.

        A borrowed session has no such trace: ``sent`` is called now, just before sending.
        """
        if sent is not None and not self._owned:
            sent()
            return None
        return sent

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
        sent: Callable[[], None] | None = None,
    ) -> Answer:
        """Send one request to the gateway and decode its JSON object answer.

        ``sent`` is called once the request is on the wire (see ``Slot.sent``).

        Raises:
            APIError: The gateway answered with an HTTP error (the subclass says which).
            ProtocolError: A success answer that is not a JSON object.
            TransportError: No answer; ``sent`` says whether the request may have arrived.
        """
        assert self.same_origin(url), "the key goes only to the gateway"
        data = None if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        session = self._get_session()
        with self._translate(url):
            async with session.request(
                method,
                url,
                data=data,
                headers=self._headers(json_body=data is not None),
                timeout=self._timeout,
                allow_redirects=False,
                trace_request_ctx=self._tracing(sent),
            ) as response:
                body = await _read_capped(response)
                request_id = response.headers.get("X-Oneapi-Request-Id")
                if response.status >= 300:
                    raise self._error(response, body, request_id)
        return Answer(response.status, _decode(body, response.status), request_id)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        url: URL,
        *,
        offset: int = 0,
        read_timeout: float | None = None,
        sent: Callable[[], None] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Open a GET for download; the key is sent only if ``url`` is the gateway's.

        Redirects are followed by hand, so that the key never follows one off the gateway.
        Raises as ``request`` does for error answers of the gateway; ``sent`` as for ``request``.
        """
        session = self._get_session()
        limit = self._timeout.total
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=limit, sock_read=read_timeout or limit
        )
        for _ in range(5):
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            if self.same_origin(url):
                headers.update(self._headers(json_body=False))
                headers["Accept"] = "*/*"
            with self._translate(url):
                response = await session.get(
                    url, headers=headers, timeout=timeout, allow_redirects=False,
                    trace_request_ctx=self._tracing(sent),
                )
            if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                url = url.join(URL(response.headers["Location"]))
                response.release()
                continue
            try:
                with self._translate(url):
                    yield response
            finally:
                response.release()
            return
        raise TransportError(f"too many redirects downloading {url.with_query(None)}", sent=True)

    async def error_of(self, response: aiohttp.ClientResponse) -> Exception:
        """The error an unusable download answer stands for."""
        with self._translate(response.url):
            body = await _read_capped(response, limit=64 * 1024, strict=False)
        return self._error(response, body, response.headers.get("X-Oneapi-Request-Id"))

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
        """Map aiohttp's and the socket's failures onto TransportError, in one place."""
        where = f"{url.scheme}://{url.host}:{url.port}"
        try:
            yield
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise TransportError(
                f"cannot connect to {where}: {exc.__class__.__name__} {_plain(exc)}", sent=False
            ) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TransportError(
                f"no answer from {where}: {exc.__class__.__name__} {_plain(exc)}", sent=True
            ) from exc

    async def close(self) -> None:
        """Close the session if this transport created it; a borrowed one stays open."""
        session, self._session = self._session, None
        if session is not None and self._owned:
            await session.close()


async def _on_headers_sent(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    sent = context.trace_request_ctx
    if sent is not None:
        sent()


def _plain(exc: BaseException) -> str:
    return str(exc) or "(no detail)"


async def _read_capped(
    response: aiohttp.ClientResponse, *, limit: int = _MAX_JSON, strict: bool = True
) -> bytes:
    """Read a body of at most ``limit`` bytes; beyond it, fail (strict) or cut."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            if strict:
                raise ProtocolError(
                    f"the answer is larger than {limit} bytes; not a task object",
                    status=response.status,
                    body=snippet(b"".join(chunks)),
                )
            break
    return b"".join(chunks)


def _decode(body: bytes, status: int) -> Mapping[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        what = "an empty body" if not body.strip() else "a body that is not JSON"
        raise ProtocolError(
            f"the gateway answered HTTP {status} with {what}", status=status, body=snippet(body)
        ) from exc
    if not isinstance(data, dict):
        raise ProtocolError(
            f"the gateway answered HTTP {status} with JSON that is not an object",
            status=status,
            body=snippet(body),
        )
    return data
