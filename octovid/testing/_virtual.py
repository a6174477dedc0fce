"""An event loop on virtual time, for schedulers tested or measured without waiting."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["VirtualLoop"]


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer whenever nothing is ready to run.

    Code on it reads time through ``loop.time()``, so sleeps and timers take no real time and
    every instant is exact, or late by ``lateness`` like a real loop's timers. Only for code
    that does no I/O: a socket's readiness does not move the clock.

    Args:
        lateness: Seconds every timer fires late.
        start: The clock's first reading.
    """

    def __init__(self, lateness: float = 0.0, *, start: float = 1000.0) -> None:
        super().__init__()
        self._now = start
        self._lateness = lateness

    def time(self) -> float:
        return self._now

    def _run_once(self) -> None:
        ready: Any = self._ready  # type: ignore[attr-defined]
        scheduled: Any = self._scheduled  # type: ignore[attr-defined]
        if not ready and scheduled:
            self._now = max(self._now, scheduled[0].when() + self._lateness)
        super()._run_once()  # type: ignore[misc]
