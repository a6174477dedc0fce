"""Completion times learned across runs: from an earlier run's journal, against the simulator.

Workload: one Veo model (no progress on query, state fetched live), every job 1 s long, no
faults; the client polls on a short geometric schedule (50 ms growing to 200 ms).
"""

from __future__ import annotations

import octovid
from octovid import PollPolicy, RateLimit

POLICY = PollPolicy(initial=0.05, max_interval=0.2, jitter=0.0, refresh=0.0, deadline=30.0)
MODEL = "veo3.1-fast"


def client_for(sim, journal) -> octovid.Client:
    return octovid.Client(sim.api_key, sim.url, rate_limit=RateLimit(500), poll=POLICY,
                          journal=journal)


def first_polls(sim, task_ids) -> list[float]:
    """Seconds from each task's create to its first query, as the simulator saw them."""
    created = {r.task_id: r.at for r in sim.requests if r.method == "POST"}
    first: dict[str, float] = {}
    for record in sim.requests:
        if record.method == "GET" and record.task_id in task_ids:
            first.setdefault(record.task_id, record.at - created[record.task_id])
    return [first[task_id] for task_id in task_ids]


async def test_the_journal_of_an_earlier_run_aims_the_first_polls(launch, tmp_path):
    """Tasks of a model an earlier run's journal saw finish are first polled near its end."""
    sim = await launch(duration=(1.0, 1.0))
    path = tmp_path / "journal.db"
    requests = [octovid.VeoRequest(f"earlier {i}", model=MODEL) for i in range(24)]
    async with client_for(sim, path) as client:
        jobs = client.submit_many(requests, keys=[f"k{i}" for i in range(24)])
        await octovid.gather(jobs)
    cold = first_polls(sim, {job.id for job in jobs})
    assert max(cold) < 0.5  # nothing known: the geometric schedule from 50 ms

    async with client_for(sim, path) as client:  # a new process, the same journal
        later = client.submit_many([octovid.VeoRequest(f"later {i}", model=MODEL)
                                    for i in range(3)], keys=["n0", "n1", "n2"])
        tasks = await octovid.gather(later)
    assert all(task.status is octovid.Status.COMPLETED for task in tasks)
    learned = first_polls(sim, {job.id for job in later})
    # about 1 s (the 2% quantile of what finished) + max_interval: at the end, not before it
    assert all(0.9 <= seconds <= 2.0 for seconds in learned), learned
    for job in later:
        assert sim.tasks[job.id].polls <= 2  # cold, a 1 s task costs about 7 polls

