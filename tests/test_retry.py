"""The one failure policy: every decision, the backoff schedule, Retry-After, the test mode."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

import octovid
from octovid import _retry
from octovid._retry import Action, Kind, Throttle, decide, throttle_of, waits
from octovid.testing import instant_retries

POLICY = octovid.RetryPolicy()
AMBIGUOUS_OK = octovid.RetryPolicy(retry_ambiguous_create=True)


def verdict(exc: BaseException, kind: Kind, *, attempt: int = 1, age: float | None = None,
            policy: octovid.RetryPolicy = POLICY) -> Action:
    return decide(exc, kind, attempt=attempt, schedule=waits(), policy=policy, age=age).action


def server_error(*, from_gateway: bool, code: str = "") -> octovid.ServerError:
    return octovid.ServerError(502, "bad gateway", code=code, from_gateway=from_gateway)


@pytest.mark.parametrize(
    ("exc", "action"),
    [
        (octovid.TransportError("refused", sent=False), Action.RETRY),
        (octovid.TransportError("reset", sent=True), Action.UNCERTAIN),
        (octovid.RateLimitError(429, "slow down", code="fail_to_fetch_task"), Action.RETRY),
        (server_error(from_gateway=True), Action.RETRY),  # the gateway refunded it
        (server_error(from_gateway=False), Action.UNCERTAIN),  # a proxy's page: it may be in
        (server_error(from_gateway=True, code="model_not_found"), Action.GIVE_UP),
        (octovid.BadRequestError(400, "bad size", code="invalid_size"), Action.GIVE_UP),
        (octovid.AuthenticationError(401, "Invalid token"), Action.GIVE_UP),
        (octovid.InsufficientQuotaError(403, "broke"), Action.GIVE_UP),
        (octovid.ProtocolError("no task id"), Action.UNCERTAIN),  # a 200 without an id
        (octovid.JournalError("disk full"), Action.GIVE_UP),  # nothing was sent
    ],
)
def test_a_create_is_resent_only_when_surely_not_accepted(exc, action):
    """Creates: retried when refused before acceptance, uncertain when maybe billed."""
    assert verdict(exc, Kind.CREATE) is action


def test_ambiguous_creates_are_resent_only_when_asked():
    """RetryPolicy(retry_ambiguous_create=True) turns 'uncertain' into 'retry', nothing else."""
    lost = octovid.TransportError("reset", sent=True)
    assert verdict(lost, Kind.CREATE, policy=AMBIGUOUS_OK) is Action.RETRY
    refused = octovid.BadRequestError(400, "bad")
    assert verdict(refused, Kind.CREATE, policy=AMBIGUOUS_OK) is Action.GIVE_UP


@pytest.mark.parametrize(
    "exc",
    [
        octovid.TransportError("reset", sent=True),
        octovid.RateLimitError(429, ""),
        server_error(from_gateway=False),
        server_error(from_gateway=True, code="fail_to_fetch_task"),
    ],
)
def test_transient_poll_failures_are_always_retried(exc):
    """A poll is retried after any transient failure, however many came before."""
    assert verdict(exc, Kind.POLL, attempt=50) is Action.RETRY


def test_unreadable_answers_fail_a_poll_on_the_third():
    """Two garbled answers in a row are retried; the third fails that task."""
    garbled = octovid.ProtocolError("not JSON")
    assert [verdict(garbled, Kind.POLL, attempt=n) for n in (1, 2, 3)] == [
        Action.RETRY, Action.RETRY, Action.GIVE_UP,
    ]
    assert verdict(garbled, Kind.QUERY, attempt=3) is Action.RETRY  # bounded by max_tries


def test_an_unknown_task_is_transient_only_just_after_our_create():
    """task_not_exist within 30 s of our own create is retried; otherwise it is final."""
    gone = octovid.TaskNotFoundError(400, "task_not_exist", code="task_not_exist")
    assert verdict(gone, Kind.POLL, age=3.0) is Action.RETRY
    assert verdict(gone, Kind.POLL, age=45.0) is Action.GIVE_UP
    assert verdict(gone, Kind.POLL, age=None) is Action.GIVE_UP  # a task made elsewhere
    assert verdict(gone, Kind.QUERY) is Action.GIVE_UP


def test_the_schedule_doubles_from_half_a_second_with_full_jitter():
    """Waits are drawn from [0, 0.5], [0, 1], [0, 2]... and capped."""
    drawn = [list(itertools.islice(waits(cap=4.0), 6)) for _ in range(200)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for column, ceiling in zip(zip(*drawn, strict=True), ceilings, strict=True):
        assert all(0 <= wait <= ceiling for wait in column)
        assert max(column) > 0.8 * ceiling and min(column) < 0.2 * ceiling  # spread, jittered


def test_retry_after_is_never_shortened():
    """A retry waits at least the Retry-After the server asked for."""
    exc = octovid.RateLimitError(429, "", retry_after=7.0)
    result = decide(exc, Kind.CREATE, attempt=1, schedule=waits(), policy=POLICY)
    assert result.action is Action.RETRY and result.wait >= 7.0


def test_an_absurd_retry_after_is_capped_at_five_minutes(caplog):
    """Retry-After of a day (a proxy's) waits 300 s, with a warning."""
    exc = octovid.RateLimitError(429, "", retry_after=86_400.0)
    with caplog.at_level(logging.WARNING, logger="octovid"):
        result = decide(exc, Kind.POLL, attempt=1, schedule=waits(), policy=POLICY)
        throttle = throttle_of(exc)
    assert result.wait == 300.0
    assert throttle is not None and throttle.retry_after == 300.0
    assert "86400s" in caplog.text


@pytest.mark.parametrize(
    ("code", "key_wide"),
    [("", True), ("rate_limit_exceeded", True), ("fail_to_fetch_task", False),
     ("token_concurrency_limit_reached", False)],
)
def test_only_a_429_of_the_key_pauses_the_key(code, key_wide):
    """Upstream-saturation and concurrency-gate 429s are their request's; others the key's."""
    exc = octovid.RateLimitError(429, "", code=code, retry_after=2.0)
    assert throttle_of(exc) == Throttle(2.0, key_wide=key_wide)
    assert throttle_of(server_error(from_gateway=True)) is None


def test_test_mode_removes_every_wait_and_keeps_every_decision():
    """Under instant_retries() waits are 0 (Retry-After too); what is retried is unchanged."""
    slow = octovid.RateLimitError(429, "", retry_after=30.0)
    lost = octovid.TransportError("reset", sent=True)
    with instant_retries():
        assert list(itertools.islice(waits(), 5)) == [0.0] * 5
        assert decide(slow, Kind.CREATE, attempt=1, schedule=waits(), policy=POLICY).wait == 0
        assert verdict(lost, Kind.CREATE) is Action.UNCERTAIN
    assert decide(slow, Kind.CREATE, attempt=1, schedule=waits(), policy=POLICY).wait >= 30


def test_retrying_stops_at_max_tries_on_the_loops_clock(virtual):
    """retrying() makes max_tries attempts, waiting on loop time (no real sleep)."""
    attempts: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def attempt() -> None:
            attempts.append(loop.time())
            raise octovid.ServerError(503, "busy")

        with pytest.raises(octovid.ServerError):
            await _retry.retrying(attempt, kind=Kind.QUERY, policy=octovid.RetryPolicy(
                max_tries=4, max_time=1000), what="a query")

    virtual(main)
    assert len(attempts) == 4
    assert all(b >= a for a, b in itertools.pairwise(attempts))


def test_retrying_gives_up_before_a_wait_that_would_pass_max_time(virtual):
    """A Retry-After that would end after max_time is not waited for."""
    attempts = 0

    async def main() -> float:
        nonlocal attempts
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            raise octovid.RateLimitError(429, "", retry_after=50.0)

        with pytest.raises(octovid.RateLimitError):
            await _retry.retrying(attempt, kind=Kind.QUERY, policy=octovid.RetryPolicy(
                max_tries=6, max_time=120), what="a query")
        return loop.time() - start

    elapsed = virtual(main)
    assert attempts == 3  # at 0, >= 50, >= 100; the next would end past 120
    assert 100 <= elapsed < 120


def test_retrying_turns_an_ambiguous_create_into_the_callers_error(virtual):
    """An uncertain create is raised as the error the caller builds, chained, never resent."""
    calls = 0

    async def main() -> None:
        nonlocal calls

        async def attempt() -> None:
            nonlocal calls
            calls += 1
            raise octovid.TransportError("reset", sent=True)

        with pytest.raises(RuntimeError, match="maybe billed") as info:
            await _retry.retrying(attempt, kind=Kind.CREATE, policy=POLICY, what="a create",
                                  uncertain=lambda exc: RuntimeError("maybe billed"))
        assert isinstance(info.value.__cause__, octovid.TransportError)

    virtual(main)
    assert calls == 1
