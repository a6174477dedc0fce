"""One key's rate budget shared through a real Redis server: pacing, signals, outages, cost."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
import servers

import octovid
from octovid import RateLimit
from octovid._cli._main import main as cli
from octovid._limiter import Lane, Limiter
from octovid._retry import Throttle
from octovid._shared_limit import budget_name
from octovid.testing import Simulator

FAST = octovid.PollPolicy(initial=0.1, max_interval=0.4, deadline=60)

# A connection of a simulator stopped mid-test (the outage tests) is only freed by the
# collector; collect it here, where its ResourceWarning is known, not in a later module's test.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def _collect_leftovers():
    """Free this test's dropped connections before the next test runs."""
    yield
    gc.collect()



def fresh_key() -> str:
    """An API key of its own for each test: budgets in the session's Redis never mix."""
    return f"sk-test-{uuid.uuid4().hex}"


def most_in_window(times: list[float], per: float) -> int:
    """The largest number of ``times`` in any half-open window ``per`` long."""
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u < t + per) for i, t in enumerate(times))


async def take(limiter: Limiter, count: int, lane: Lane = Lane.QUERY) -> list[float]:
    """Acquire ``count`` slots at once, release each at once; return the loop times granted."""
    loop = asyncio.get_running_loop()

    async def one() -> float:
        with await limiter.acquire(lane) as slot:
            return loop.time() + 0 * slot.at

    return list(await asyncio.gather(*(one() for _ in range(count))))


@pytest.fixture
async def limiters(redis_url: str) -> AsyncIterator[list[Limiter]]:
    """Limiters made by the test, closed and disconnected after it."""
    made: list[Limiter] = []
    yield made
    for limiter in made:
        limiter.close()
        await limiter.disconnect()


def shared(made: list[Limiter], url: str, key: str, rate: float = 20, **options: object
           ) -> Limiter:
    limiter = Limiter(RateLimit(rate, redis=url, **options), 64, key=key)  # type: ignore[arg-type]
    made.append(limiter)
    return limiter


async def commandstats(url: str) -> dict[str, int]:
    """Calls of each Redis command so far."""
    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def test_limiters_on_one_key_never_exceed_the_rate_together(redis_url, limiters):
    """Three limiters of one key and one Redis grant at most `rate` per second between them."""
    key = fresh_key()
    group = [shared(limiters, redis_url, key, rate=40) for _ in range(3)]
    loop = asyncio.get_running_loop()
    start = loop.time()
    times = [t for batch in await asyncio.gather(*(take(one, 30) for one in group))
             for t in batch]
    assert len(times) == 90
    assert most_in_window(times, 1.0) <= 40
    assert loop.time() - start >= 89 / 40  # paced together, not 40/s each
    assert all(one.shared for one in group)


async def test_limiters_on_one_key_share_the_budget_fairly(redis_url, limiters):
    """Two limiters that both want more than the budget get about half of it each."""
    key = fresh_key()
    first, second = shared(limiters, redis_url, key, 40), shared(limiters, redis_url, key, 40)
    loop = asyncio.get_running_loop()
    granted: list[tuple[float, int]] = []

    async def run(limiter: Limiter, name: int) -> None:
        async def one() -> None:
            with await limiter.acquire():
                granted.append((loop.time(), name))

        await asyncio.gather(*(one() for _ in range(40)))

    await asyncio.gather(run(first, 0), run(second, 1))
    granted.sort()
    while_both = granted[:40]  # both still had waiters for these
    share = sum(name for _, name in while_both) / len(while_both)
    assert 0.4 <= share <= 0.6


async def test_different_api_keys_do_not_share_a_budget(redis_url, limiters):
    """Limiters of two keys on one Redis each get the whole rate."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(
        take(shared(limiters, redis_url, fresh_key()), 20),
        take(shared(limiters, redis_url, fresh_key()), 20),
    )
    elapsed = loop.time() - start
    assert 19 / 20 <= elapsed < 1.6  # one key's 20 at 20/s each: about 1 s, not 2


async def test_the_names_in_redis_hold_a_hash_of_the_key_never_the_key(redis_url, limiters):
    """The budget's Redis names and values derive from a hash of the API key, not the key."""
    key = fresh_key()
    await take(shared(limiters, redis_url, key), 3)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        names = [name async for name in client.scan_iter(match="octovid:*")]
        mine = [name for name in names if name.startswith(budget_name(key))]
        values = [str(await client.hgetall(name)) for name in mine if name.endswith(":state")]
        values += [str(await client.zrange(name, 0, -1)) for name in mine
                   if name.endswith(":members")]
    finally:
        await client.aclose()
    assert sorted(name.rpartition(":")[2] for name in mine) == ["members", "state"]
    assert not any(key in name or key.removeprefix("sk-") in name for name in names)
    assert not any(key in value for value in values)


async def test_a_pause_seen_by_one_process_slows_every_other(redis_url, limiters):
    """A key-wide Retry-After answered to one limiter holds the next grant of another."""
    key = fresh_key()
    first, second = shared(limiters, redis_url, key), shared(limiters, redis_url, key)
    loop = asyncio.get_running_loop()
    await take(second, 1)
    slot = await first.acquire()
    first.answered(slot, Throttle(retry_after=1.0, key_wide=True))
    slot.release()
    await asyncio.sleep(0.05)  # the pause is on Redis
    asked = loop.time()
    with await second.acquire():
        waited = loop.time() - asked
    assert 0.85 <= waited <= 1.3
    assert second.paused_for == 0


async def test_the_adaptive_cut_of_one_process_slows_every_other(redis_url, limiters, caplog):
    """Congestion judged by one limiter cuts the shared rate: another limiter paces at it."""
    caplog.set_level(logging.INFO, logger="octovid")
    key = fresh_key()
    first, second = shared(limiters, redis_url, key, 50), shared(limiters, redis_url, key, 50)
    await take(second, 1)
    slots = [await first.acquire() for _ in range(60)]
    for count, slot in enumerate(slots):
        # 1 in 4 refused: congestion, not a storm (no pause), so only the rate tells
        first.answered(slot, Throttle(retry_after=None, key_wide=False) if count % 4 == 3
                       else None)
        slot.release()
    assert first.rate < 40
    await asyncio.sleep(0.05)
    times = await take(second, 11)
    assert second.rate < 40
    assert abs(second.rate - first.rate) < 5
    assert max(times) - min(times) >= 10 / 40  # paced at the cut rate, not at 50/s
    assert sum("slowing down" in r.getMessage() for r in caplog.records) == 1  # one reaction


async def test_one_redis_round_trip_per_grant(redis_url, limiters):
    """Each grant costs one EVALSHA on Redis and no other command: no polling in a loop."""
    key = fresh_key()
    group = [shared(limiters, redis_url, key) for _ in range(2)]
    for one in group:
        await one.start()
    before = await commandstats(redis_url)
    await asyncio.gather(*(take(one, 15) for one in group))
    after = await commandstats(redis_url)
    delta = {name: after[name] - before.get(name, 0) for name in after
             if after[name] != before.get(name, 0)}
    for name in ("info", "hello"):  # the count itself, on a connection of its own
        delta.pop(name, None)
    # What the script calls on the server counts too: one call each per grant, no more.
    inside = {"time", "hmget", "hset", "zadd", "zremrangebyscore", "zcard"}
    assert delta.pop("evalsha") == 30
    assert delta.pop("pexpire") == 60
    assert delta == dict.fromkeys(inside, 30)


async def test_redis_unreachable_at_start_is_a_config_error_naming_the_url(launch):
    """An unreachable Redis fails the client's start with ConfigError; credentials unshown."""
    sim = await launch(seed=1)
    port = servers.free_port()
    limit = RateLimit(5, redis=f"redis://octo:s3cret@127.0.0.1:{port}/0")
    assert "s3cret" not in repr(limit)
    client = octovid.Client(sim.api_key, sim.url, rate_limit=limit, poll=FAST)
    with pytest.raises(octovid.ConfigError) as caught:
        await client.__aenter__()
    message = str(caught.value)
    assert f"redis://127.0.0.1:{port}/0" in message
    assert "s3cret" not in message and "octo:" not in message
    with pytest.raises(octovid.ConfigError):  # a create: before anything is sent
        await client.create(octovid.GrokRequest("never sent"))
    watched = client.watch("task-that-exists-nowhere")
    with pytest.raises(octovid.ConfigError):  # a poll too, and the watcher lives on
        await watched
    await client.aclose()
    assert sim.requests == []


async def test_a_redis_outage_mid_run_falls_back_then_rejoins(launch, tmp_path, caplog):
    """Redis stopped mid-run: jobs complete on the local share, one warning, rejoin after."""
    caplog.set_level(logging.INFO, logger="octovid")
    server = servers.RedisServer(tmp_path / "redis")
    server.start()
    # The key's limit is 10% above the client's rate: room for a loaded machine's timer jitter
    # (the guard's slack is 25 ms), none for a fallback that overlaps the shared budget (2x).
    sim = await launch(seed=2, duration=(0.3, 1.0), rate_limit=(22, 1.0))
    try:
        async with octovid.Client(sim.api_key, sim.url, poll=FAST,
                                  rate_limit=RateLimit(20, redis=server.url)) as client:
            jobs = [client.submit(octovid.GrokRequest(f"clip {n}")) for n in range(40)]
            await asyncio.sleep(0.6)
            server.stop()
            await asyncio.sleep(2.0)
            assert not client._limiter.shared
            server.start()
            tasks = await asyncio.wait_for(asyncio.gather(*jobs), 45)
            await asyncio.sleep(2.5)  # the probes back off to 2 s at most
            assert client._limiter.shared
            await take(client._limiter, 2)  # and it grants from Redis again
    finally:
        server.stop()
    assert [task.status for task in tasks] == [octovid.Status.COMPLETED] * 40
    assert sim.rate_limited == 0
    messages = [r.getMessage() for r in caplog.records]
    lost = [m for m in messages if "lost the shared rate budget" in m]
    assert len(lost) == 1 and server.url in lost[0]
    assert sum("answers again" in m for m in messages) == 1


_WORKER = """
import asyncio, json, sys, time
from octovid import RateLimit
from octovid._limiter import Limiter

async def main(url, key, count, start):
    limiter = Limiter(RateLimit(20, redis=url), 64, key=key)
    await limiter.start()
    await asyncio.sleep(max(0.0, start - time.time()))
    async def one():
        with await limiter.acquire():
            return time.time()
    times = await asyncio.gather(*(one() for _ in range(count)))
    limiter.close()
    await limiter.disconnect()
    print(json.dumps(times))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
"""


def test_two_processes_on_one_key_never_exceed_the_rate_together(redis_url):
    """Two real processes sharing a key through Redis send at most `rate` a second together."""
    key = fresh_key()
    start = time.time() + 2.0  # both are up by then
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    workers = [
        subprocess.Popen([sys.executable, "-c", _WORKER, redis_url, key, "30", str(start)],
                         stdout=subprocess.PIPE, env=env)
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=30)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0]
    each = [json.loads(output) for output in outputs]
    times = [t for batch in each for t in batch]
    assert len(times) == 60
    # At most 20 in any second; 5% of slack for when each process notes its grants.
    assert most_in_window(times, 0.95) <= 20
    assert max(times) - min(times) >= 59 / 20 * 0.97
    first = sorted(times)[:40]  # both want more: neither starves
    assert sum(t in each[0] for t in first) >= 14


def test_rate_limit_redis_is_checked():
    """RateLimit(redis=...) takes redis://, rediss:// or unix:// URLs; the error says so."""
    for good in ("redis://localhost:6379/0", "rediss://h:6380", "unix:///run/redis.sock"):
        assert RateLimit(5, redis=good).redis == good
    for bad in ("http://localhost:6379", "localhost:6379", "redis://", ""):
        with pytest.raises(ValueError, match=r"redis must be a redis://, rediss:// or unix://"):
            RateLimit(5, redis=bad)
    with pytest.raises(TypeError, match="redis must be a URL string"):
        RateLimit(5, redis=6379)  # type: ignore[arg-type]


def test_the_client_reads_octovid_redis_url_when_the_rate_limit_names_none(monkeypatch):
    """OCTOVID_REDIS_URL applies as OCTOVID_API_KEY does: when the argument leaves it open."""
    monkeypatch.setenv("OCTOVID_REDIS_URL", "redis://127.0.0.1:1/0")
    client = octovid.Client("k", "http://127.0.0.1:9", rate_limit=RateLimit(5))
    assert client._limiter._shared is not None
    assert client._limiter._shared.url == "redis://127.0.0.1:1/0"
    given = octovid.Client("k", "http://127.0.0.1:9",
                           rate_limit=RateLimit(5, redis="redis://127.0.0.1:2/0"))
    assert given._limiter._shared is not None
    assert given._limiter._shared.url == "redis://127.0.0.1:2/0"
    monkeypatch.setenv("OCTOVID_REDIS_URL", "http://nope")
    with pytest.raises(octovid.ConfigError, match="OCTOVID_REDIS_URL: redis must be"):
        octovid.Client("k", "http://127.0.0.1:9")


def test_the_cli_refuses_a_bad_redis_url_before_sending(capsys):
    """`--redis` that is not a Redis URL is bad input (exit 2), named in the message."""
    status = cli(["--api-key", "k", "--base-url", "http://127.0.0.1:9", "--redis",
                  "http://x", "status", "t1"])
    assert status == 2
    assert "--redis: redis must be a redis://" in capsys.readouterr().err


def test_the_cli_names_an_unreachable_redis(capsys):
    """`--redis` at an address where nothing listens fails with the URL named, nothing sent."""

    async def serve_and_run() -> tuple[int, int]:
        async with Simulator(seed=1) as sim:
            port = servers.free_port()
            status = await asyncio.to_thread(cli, [
                "--api-key", sim.api_key, "--base-url", sim.url, "--redis",
                f"redis://127.0.0.1:{port}/0", "status", "t1",
            ])
            return status, len(sim.requests)

    status, sent = asyncio.run(serve_and_run())
    assert (status, sent) == (1, 0)
    assert "cannot reach Redis at redis://127.0.0.1:" in capsys.readouterr().err
