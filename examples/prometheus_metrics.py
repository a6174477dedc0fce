"""octovid's events as Prometheus metrics, with ``prometheus-client``.

:class:`OctovidMetrics` is an ``on_event`` hook that keeps the metrics below; any Prometheus
scrapes them from ``prometheus_client.start_http_server(port)`` (or your web framework's
``/metrics`` route)::

    metrics = OctovidMetrics()                       # on prometheus_client's default registry
    async with octovid.Client(on_event=metrics) as client:
        ...

=======================================  ==================================================
``octovid_requests_total{kind}``         requests sent (``create``, ``query``, ``download``)
``octovid_answers_total{kind,status}``   answers by HTTP status (``none``: no answer came)
``octovid_request_seconds{kind}``        a histogram: from sending to the answer
``octovid_requests_in_flight{kind}``     sent and not yet answered
``octovid_rate_limited_total{kind}``     429 answers
``octovid_pauses_total``                 pauses of every request of the key after 429s
``octovid_paused_seconds_total``         their length, summed
``octovid_jobs_total{outcome,model}``    jobs ended: completed, failed, timeout, error...
``octovid_job_seconds{outcome}``         a histogram: from submit to the job's end
=======================================  ==================================================

Run it with ``pip install -e ".[examples]"``, ``octovid simulate`` in one terminal, and in
another the ``export`` line it prints, then ``python examples/prometheus_metrics.py --jobs 5``:
it generates five videos while serving the metrics on http://127.0.0.1:9100/metrics, then
prints them.
"""

from __future__ import annotations

import argparse
import asyncio

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.exposition import generate_latest

import octovid

JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)


class OctovidMetrics:
    """An ``on_event`` hook keeping Prometheus metrics of one or more clients."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, namespace: str = "octovid"):
        def made(kind, name, doc, labels=(), **options):
            return kind(name, doc, labels, namespace=namespace, registry=registry, **options)

        self.requests = made(Counter, "requests", "Requests sent", ["kind"])
        self.answers = made(Counter, "answers", "Answers by HTTP status", ["kind", "status"])
        self.latency = made(Histogram, "request_seconds", "Seconds to the answer", ["kind"])
        self.in_flight = made(Gauge, "requests_in_flight", "Requests awaiting answer", ["kind"])
        self.rate_limited = made(Counter, "rate_limited", "429 answers", ["kind"])
        self.pauses = made(Counter, "pauses", "Pauses of every request after 429s")
        self.paused = made(Counter, "paused_seconds", "Seconds of those pauses")
        self.jobs = made(Counter, "jobs", "Jobs ended, by outcome", ["outcome", "model"])
        self.job_seconds = made(Histogram, "job_seconds", "Seconds from submit to end",
                                ["outcome"], buckets=JOB_BUCKETS)

    def __call__(self, event: octovid.Event) -> None:
        match event:
            case octovid.RequestSent(kind=kind):
                self.requests.labels(kind).inc()
                self.in_flight.labels(kind).inc()
            case octovid.Answered(kind=kind, status=status, seconds=seconds):
                self.in_flight.labels(kind).dec()
                self.answers.labels(kind, "none" if status is None else str(status)).inc()
                self.latency.labels(kind).observe(seconds)
            case octovid.RateLimited(kind=kind):
                self.rate_limited.labels(kind).inc()
            case octovid.Paused(seconds=seconds):
                self.pauses.inc()
                self.paused.inc(seconds)
            case octovid.JobFinished(outcome=outcome, model=model, seconds=seconds):
                self.jobs.labels(outcome, model or "unknown").inc()
                self.job_seconds.labels(outcome).observe(seconds)


async def run(jobs: int, metrics: OctovidMetrics) -> list[octovid.Task | BaseException]:
    """Generate ``jobs`` videos with a client that reports to ``metrics``."""
    async with octovid.Client(on_event=metrics) as client:
        requests = [octovid.VeoRequest(f"a cat on a piano, take {i}") for i in range(jobs)]
        return await octovid.gather(client.submit_many(requests), return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    """Serve the metrics while generating some videos, then print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5, help="videos to generate")
    parser.add_argument("--port", type=int, default=9100, help="metrics port; 0: none")
    args = parser.parse_args(argv)
    registry = CollectorRegistry()
    metrics = OctovidMetrics(registry)
    if args.port:
        start_http_server(args.port, addr="127.0.0.1", registry=registry)
    results = asyncio.run(run(args.jobs, metrics))
    done = sum(isinstance(r, octovid.Task) for r in results)
    print(generate_latest(registry).decode(), end="")
    print(f"# {done} of {len(results)} videos generated")


if __name__ == "__main__":
    main()
