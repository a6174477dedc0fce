"""The pytest plugin of octovid (entry point ``pytest11``): the ``octovid_simulator`` fixture.

The fixture runs the simulator on its own event loop in a background thread, so it serves sync
tests and async tests under any async plugin alike::

    @pytest.mark.octovid_simulator(duration=(0.1, 0.2), failure_rate=0.5)
    def test_something(octovid_simulator):
        ...  # octovid_simulator.url, octovid_simulator.api_key

    @pytest.mark.octovid_simulator(workload="sora+faults", time_scale=40, seed=1)
    def test_on_a_real_world_workload(octovid_simulator):
        ...  # octovid_simulator.describe() names what ran
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from octovid.testing import Simulator


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "octovid_simulator(**options): keyword arguments of octovid.testing.Simulator "
        "for the octovid_simulator fixture",
    )


@pytest.fixture
def octovid_simulator(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    """A started :class:`octovid.testing.Simulator`, closed after the test."""
    # Imported here, not when pytest loads the plugin, so that coverage measurement (which
    # starts after plugins load) sees octovid imported.
    from octovid.testing import Simulator  # noqa: PLC0415

    marker = request.node.get_closest_marker("octovid_simulator")
    if marker is not None and marker.args:
        raise pytest.UsageError("octovid_simulator takes keyword arguments only")
    with Simulator(**(marker.kwargs if marker else {})).run_in_thread() as simulator:
        yield simulator
