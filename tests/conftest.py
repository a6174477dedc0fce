"""Shared test helpers: an event loop on virtual time, simulators, an HTTP session."""

from __future__ import annotations

import asyncio
import os
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest
import servers

import octovid._watcher
from octovid.testing import Simulator, VirtualLoop

T = TypeVar("T")
EPOCH = 1.8e9  # the wall clock at loop time 0, for the watcher's reading of answers' stamps
Launch = Callable[..., Awaitable[Simulator]]


def run_virtual(main: Callable[[], Coroutine[Any, Any, T]], lateness: float = 0.0) -> T:
    """Run ``main()`` to completion on a fresh loop on virtual time."""
    loop = VirtualLoop(lateness)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.fixture
def virtual() -> Callable[..., Any]:
    """Run a coroutine function on virtual time: ``virtual(main, lateness=0.0)``."""
    return run_virtual


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> float:
    """The watcher reads the wall clock as EPOCH plus the virtual loop's time; EPOCH."""
    clock = types.SimpleNamespace(time=lambda: EPOCH + asyncio.get_running_loop().time())
    monkeypatch.setattr(octovid._watcher, "time", clock)
    return EPOCH


@pytest.fixture
async def launch() -> AsyncIterator[Launch]:
    """Start simulators with the given options; close them after the test."""
    started: list[Simulator] = []

    async def launch(**options: Any) -> Simulator:
        simulator = Simulator(**options)
        await simulator.start()
        started.append(simulator)
        return simulator

    yield launch
    for simulator in started:
        await simulator.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A raw aiohttp session, for tests that speak to the simulator without octovid."""
    async with aiohttp.ClientSession() as session:
        yield session


def _server_url(
    env: str, factory: type[servers.RedisServer] | type[servers.PostgresServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    if url := os.environ.get(env):
        yield url
        return
    server = factory(tmp_path_factory.mktemp(factory.__name__))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server's URL: ``OCTOVID_TEST_REDIS_URL``, or one started for the session."""
    yield from _server_url(servers.REDIS_ENV, servers.RedisServer, tmp_path_factory)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server's URL: ``OCTOVID_TEST_POSTGRES_URL``, or one started here."""
    yield from _server_url(servers.POSTGRES_ENV, servers.PostgresServer, tmp_path_factory)
