"""A test mode for octovid's retries: the same decisions, without the waits."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def instant_retries() -> Iterator[None]:
    """Within the block, every retry of octovid's happens at once (``Retry-After`` included).

    What is retried, and how many times, stays the same: only the waits go, as with
    ``stamina.set_testing``. For test suites that exercise failure paths.
    """
    from octovid import _retry  # noqa: PLC0415 - the one place this reaches into the client

    _retry.set_testing(True)
    try:
        yield
    finally:
        _retry.set_testing(False)
