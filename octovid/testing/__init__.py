"""Test helpers for octovid: a local imitation of the octopusx gateway, and a pytest plugin.

:class:`Simulator` serves the gateway's routes and error shapes on loopback, with tasks that
finish on their own after a drawn duration, result URLs on a separate expiring "CDN", a per-key
rate limiter, random conditions (sporadic 429s, storms, 5xx, dropped connections, slow answers,
stuck tasks) and scripted faults (error statuses, dropped connections, delays, truncated
downloads)::

    async with Simulator(duration=(0.1, 0.3), failure_rate=0.2, seed=7) as sim:
        ...  # a client pointed at sim.url with sim.api_key; then inspect sim.requests

:data:`WORKLOADS` names real-world workloads (``sora``, ``veo-fast``, ``mixed``, each also with
``+sporadic-429``, ``+storms`` or ``+faults``): job durations with long tails, progress
patterns, the gateway's refresh period and faults, run ``time_scale`` times faster.
:data:`ROUTE_WORKLOADS` names those of the OpenAI-format and native routes (``openai/kling``,
``openai/seedance``, ``openai/mixed``, ``native/seedance``...)::

    async with Simulator(workload="sora+faults", time_scale=40, seed=1) as sim:
        print(sim.describe())

From synchronous code, ``with Simulator().run_in_thread() as sim:``. Under pytest, the
``octovid_simulator`` fixture yields a started simulator, configured by the
``@pytest.mark.octovid_simulator(**options)`` marker. ``python -m octovid.testing`` serves one
from the command line (``--workload NAME --time-scale X``).

The simulator does not depend on the octovid client: it only speaks HTTP.
:func:`instant_retries` is the client's test mode: retries without their waits.
"""

from ._faults import Conditions
from ._retries import instant_retries
from ._simulator import NativeShape, RequestRecord, ResultUrl, Simulator
from ._tasks import Pattern, SimTask
from ._virtual import VirtualLoop
from ._workloads import (
    CONDITIONS,
    EXTRA_JOBS,
    JOBS,
    ROUTE_WORKLOADS,
    WORKLOADS,
    Jobs,
    Workload,
    WorkloadRoute,
    kind_of,
)

__all__ = [
    "CONDITIONS",
    "EXTRA_JOBS",
    "JOBS",
    "ROUTE_WORKLOADS",
    "WORKLOADS",
    "Conditions",
    "Jobs",
    "NativeShape",
    "Pattern",
    "RequestRecord",
    "ResultUrl",
    "SimTask",
    "Simulator",
    "VirtualLoop",
    "Workload",
    "WorkloadRoute",
    "instant_retries",
    "kind_of",
]
