"""Test helpers for octovid: a local imitation of the octopusx gateway, and a pytest plugin.

:class:`Simulator` serves the gateway's routes and error shapes on loopback, with tasks that
finish on their own after a drawn duration, result URLs on a separate expiring "CDN", a per-key
rate limiter and scripted faults (error statuses, dropped connections, delays, truncated
downloads)::

    async with Simulator(duration=(0.1, 0.3), failure_rate=0.2, seed=7) as sim:
        ...  # a client pointed at sim.url with sim.api_key; then inspect sim.requests

From synchronous code, ``with Simulator().run_in_thread() as sim:``. Under pytest, the
``octovid_simulator`` fixture yields a started simulator, configured by the
``@pytest.mark.octovid_simulator(**options)`` marker. ``python -m octovid.testing`` serves one
from the command line.

This package does not depend on the octovid client: it only speaks HTTP.
"""

from ._simulator import RequestRecord, SimTask, Simulator

__all__ = ["RequestRecord", "SimTask", "Simulator"]
