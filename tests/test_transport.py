"""The transport against hostile servers: nothing it raises carries the key; CDN answers mapped.

The simulator imitates the gateway; these servers misbehave in ways it does not (echoing the
request's headers, a malformed status line), so they are written here, on loopback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import pytest
from aiohttp import web
from yarl import URL

import octovid
from octovid import RateLimit
from octovid._gateway import Counters, Gateway
from octovid._limiter import Limiter
from octovid._transport import NotVideo, SourceGone, Transport, gateway_url, restamped

KEY = "sk-very-secret-key-0123456789"


def chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it links to (cause and context), transitively."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return seen


def holds_key(exc: BaseException) -> bool:
    """Whether the key shows anywhere in the exception chain: messages, reprs, attributes."""
    for link in chain(exc):
        texts = [str(link), repr(link), repr(getattr(link, "__dict__", {}))]
        info = getattr(link, "request_info", None)
        if info is not None:
            texts.append(repr(info))
        if any(KEY in text for text in texts):
            return True
    return False


@pytest.fixture
async def server() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    """Serve an aiohttp app on loopback; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    yield serve
    for runner in runners:
        await runner.cleanup()


async def test_a_non_json_answer_echoing_headers_is_redacted(server):
    """A 200 that echoes the request's headers as text keeps no key in ProtocolError.body."""

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text="\n".join(f"{k}: {v}" for k, v in request.headers.items()))

    app = web.Application()
    app.router.add_get("/v1/video/query", echo)
    transport = Transport(gateway_url(await server(app)), KEY, timeout=5)
    try:
        with pytest.raises(octovid.ProtocolError) as info:
            await transport.request("GET", transport.url("/v1/video/query", id="x"))
    finally:
        await transport.close()
    assert "Bearer ***" in info.value.body
    assert not holds_key(info.value)


async def test_a_malformed_status_line_keeps_no_key_in_the_chain():
    """aiohttp's parse error (whose request info holds the headers) is not chained."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTZ/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    transport = Transport(gateway_url(f"http://127.0.0.1:{port}"), KEY, timeout=5)
    try:
        with pytest.raises(octovid.TransportError) as info:
            await transport.request("GET", transport.url("/v1/video/query", id="x"))
    finally:
        await transport.close()
        listener.close()
        await listener.wait_closed()
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert not holds_key(info.value)
    assert "no answer from" in str(info.value)


async def test_an_error_body_echoing_the_key_is_redacted(server):
    """A 400 whose message quotes the key: message, body and code are blotted out."""

    async def quote_key(request: web.Request) -> web.Response:
        auth = request.headers["Authorization"]
        return web.json_response({"code": auth, "message": f"bad {auth}", "data": None},
                                 status=400)

    app = web.Application()
    app.router.add_post("/v1/video/create", quote_key)
    transport = Transport(gateway_url(await server(app)), KEY, timeout=5)
    try:
        with pytest.raises(octovid.BadRequestError) as info:
            await transport.request("POST", transport.url("/v1/video/create"), payload={})
    finally:
        await transport.close()
    assert not holds_key(info.value)


@pytest.mark.parametrize(
    ("status", "error"),
    [(403, SourceGone), (404, SourceGone), (410, SourceGone), (503, octovid.TransportError),
     (429, octovid.TransportError), (400, NotVideo)],
)
async def test_a_cdns_answers_are_mapped_and_get_no_key(server, status, error):
    """A CDN's 401/403/404/410 is an expired source, 429/5xx transient, anything else no video."""
    seen: list[str | None] = []

    async def cdn(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(status=status, text="<Error>nope</Error>")

    app = web.Application()
    app.router.add_get("/v/clip.mp4", cdn)
    cdn_url = URL(await server(app)) / "v" / "clip.mp4"
    transport = Transport(gateway_url("http://127.0.0.1:9"), KEY, timeout=5)
    try:
        with pytest.raises(error):
            async with transport.stream(cdn_url):
                pass
    finally:
        await transport.close()
    assert seen == [None]


async def test_a_poll_after_hint_is_read(server):
    """openai-poll-after-ms on an answer becomes Answer.poll_after in seconds; nonsense is None."""
    hints = iter(["2500", "soon", "-5"])

    async def video(request: web.Request) -> web.Response:
        return web.json_response({"id": "v1", "status": "in_progress"},
                                 headers={"openai-poll-after-ms": next(hints)})

    app = web.Application()
    app.router.add_get("/v1/videos/v1", video)
    transport = Transport(gateway_url(await server(app)), KEY, timeout=5)
    try:
        url = transport.url("/v1/videos/v1")
        answers = [await transport.request("GET", url) for _ in range(3)]
    finally:
        await transport.close()
    assert [answer.poll_after for answer in answers] == [2.5, None, None]


async def test_redirects_off_the_gateway_are_not_followed_with_the_key(server):
    """A redirect answer of the gateway is a ConfigError; the key never follows it."""

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("https://elsewhere.example/v1/video/query")

    app = web.Application()
    app.router.add_get("/v1/video/query", moved)
    transport = Transport(gateway_url(await server(app)), KEY, timeout=5)
    try:
        with pytest.raises(octovid.ConfigError, match="redirected"):
            await transport.request("GET", transport.url("/v1/video/query", id="x"))
    finally:
        await transport.close()


def test_only_a_changed_status_update_time_is_told_apart_from_a_new_answer():
    """Two answers the same but for their one status_update_time: its two numbers; else None."""
    known = b'{"id":"t1","status":"in_progress","progress":40,"status_update_time":1762010621323}'
    assert restamped(known.replace(b"621323", b"636323"), known) == (
        1762010621323, 1762010636323)
    assert restamped(known.replace(b"40", b"55").replace(b"621323", b"636323"), known) is None
    twice = known[:-1] + b',"detail":{"status_update_time":1}}'
    assert restamped(twice.replace(b"621323", b"636323"), twice) is None
    assert restamped(b'{"id":"t1"}', b'{"id":"t1"}') is None


async def test_an_answer_new_only_by_its_stamp_is_the_last_snapshot_restamped(server):
    """Polls that bring only a new stamp give the new updated_at and raw; others are read."""
    stamp = 1762010621323
    answers = iter([
        {"id": "t1", "status": "in_progress", "progress": 40, "status_update_time": stamp},
        {"id": "t1", "status": "in_progress", "progress": 40, "status_update_time": stamp + 15000},
        {"id": "t1", "status": "in_progress", "progress": 55, "status_update_time": stamp + 30000},
    ])

    async def query(request: web.Request) -> web.Response:
        return web.Response(body=json.dumps(next(answers), separators=(",", ":")),
                            content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/video/query", query)
    transport = Transport(gateway_url(await server(app)), KEY, timeout=5)
    limiter = Limiter(RateLimit(100), 4)
    gateway = Gateway(lambda: transport, limiter, Counters(), foreign_concurrency=1)
    try:
        tasks: list[octovid.Task] = []
        for _ in range(3):
            previous = tasks[-1] if tasks else None
            task, _ = await gateway.query(await limiter.acquire(), "t1", previous=previous)
            tasks.append(task)
    finally:
        await transport.close()
    first, second, third = tasks
    assert second.updated_at == dt.datetime.fromtimestamp((stamp + 15000) / 1000, dt.UTC)
    assert second.raw["status_update_time"] == stamp + 15000
    assert attrs.evolve(second, updated_at=first.updated_at) == first
    assert third.progress == 55
    assert third.updated_at == dt.datetime.fromtimestamp((stamp + 30000) / 1000, dt.UTC)


def test_query_values_are_fully_percent_encoded():
    """A task id's ':' and any other reserved character are escaped in the query string."""
    transport = Transport(gateway_url("http://gateway.example/api"), KEY, timeout=5)
    assert str(transport.url("/v1/video/query", id="sora-2:task_01k9")) == (
        "http://gateway.example/api/v1/video/query?id=sora-2%3Atask_01k9")
    assert transport.url("/v1/video/query", id="a b&c=d/é").raw_query_string == (
        "id=a%20b%26c%3Dd%2F%C3%A9")


def test_a_task_polled_again_reuses_its_query_url_while_among_the_last_polled(monkeypatch):
    """The query URL of a task is built once while it stays among the last ``_URLS`` polled."""
    monkeypatch.setattr(octovid._gateway, "_URLS", 3)
    transport = Transport(URL("https://gw.example"), "sk-test", timeout=5)
    gateway = Gateway(lambda: transport, Limiter(RateLimit(10), 4), Counters(),
                      foreign_concurrency=1)
    first = gateway._query_url("a:1", octovid.Route.UNIFIED)
    assert str(first) == "https://gw.example/v1/video/query?id=a%3A1"
    assert gateway._query_url("a:1", octovid.Route.UNIFIED) is first
    openai = gateway._query_url("a:1", octovid.Route.OPENAI)  # another route, another URL
    assert str(openai) == "https://gw.example/v1/videos/a%3A1"
    for other in ("b", "c", "d"):
        gateway._query_url(other, octovid.Route.UNIFIED)
    assert list(gateway._urls) == ["b", "c", "d"]  # the oldest is forgotten
    assert gateway._query_url("a:1", octovid.Route.UNIFIED) == first  # built anew
    gateway._query_url("c", octovid.Route.UNIFIED)  # polled again: now the newest
    assert list(gateway._urls) == ["d", "a:1", "c"]
