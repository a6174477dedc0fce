"""The benchmark's figures, from the simulator's log and a client's report, and its tables.

Every duration is in the workload's seconds (real seconds times the run's time scale), except
CPU time and the event loop's stalls, which are real: they are what the machine spent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from octovid.testing import RequestRecord, Simulator

CREATES = frozenset({"create", "videos_create", "native_create"})
QUERIES = frozenset({"query", "videos_query", "native_query"})
TRUE_OUTCOMES = frozenset({"completed", "failed"})


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values``; NaN if there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def gateway_requests(sim: Simulator, since: float) -> list[RequestRecord]:
    """The gateway requests (not the CDN) that arrived at or after ``since``, by arrival."""
    return sorted(
        (r for r in sim.requests if r.route != "cdn" and r.at >= since), key=lambda r: r.at
    )


def job_figures(
    sim: Simulator,
    report: dict[str, Any],
    *,
    scale: float,
    deadline: float,
    limit: tuple[int, float] | None,
) -> dict[str, Any]:
    """Every figure of one client's run of one scenario (see the README for definitions)."""
    start = report["t_start"]
    log = gateway_requests(sim, start)
    rows = report["jobs"]
    jobs = len(rows)
    delays, lost, stuck, outcomes = [], 0, 0, {}
    ends, done = [], set()
    for task_id, outcome, ended in rows:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        task = sim.tasks.get(task_id) if task_id else None
        if task is not None and task.stuck:
            stuck += 1  # it never ends: a deadline is its right outcome
            continue
        in_time = ended is not None and (ended - start) * scale <= deadline * 1.001
        if task is None or outcome != task.outcome or not in_time:
            lost += 1
            continue
        delays.append(max(ended - task.terminal_at, 0.0) * scale)
        ends.append(ended)
        done.add(task_id)
    created = {r.task_id for r in log if r.route in CREATES and r.task_id}
    figures: dict[str, Any] = {
        "jobs": jobs,
        "time_scale": scale,
        "requests": len(log),
        "requests_per_job": len(log) / jobs,
        "creates_per_job": sum(r.route in CREATES for r in log) / jobs,
        "polls_per_job": sum(r.route in QUERIES for r in log) / jobs,
        "r429": sum(r.status == 429 for r in log),
        "detection_p50": percentile(delays, 0.50),
        "detection_p95": percentile(delays, 0.95),
        "detection_max": max(delays, default=math.nan),
        "lost": lost,
        "stuck": stuck,
        "outcomes": outcomes,
        "tasks_created": len(created),
        "makespan": (max(ends, default=start) - start) * scale,
        "cpu_per_request_us": report["cpu"] / max(len(log), 1) * 1e6,
        "cpu_s": report["cpu"],
        "kb_per_job": max(report["rss_peak"] - report["rss_before"], 0) / jobs / 1024,
        "peak_rss_mb": report["rss_peak"] / 2**20,
        "growth_mb": max(report["rss_peak"] - report["rss_before"], 0) / 2**20,
        "max_stall_ms": report["max_stall"] * 1e3,
        "gc_longest_ms": report["gc_longest"] * 1e3,
        "wall_s": report["wall"],
    }
    if limit is not None:
        figures.update(throughput(sim, log, limit, scale, done))
    if "stats" in report:
        figures["client_stats"] = report["stats"]
    return figures


def throughput(
    sim: Simulator, log: list[RequestRecord], limit: tuple[int, float], scale: float,
    done: set[str],
) -> dict[str, Any]:
    """The share of the key's budget that bought finished jobs, while jobs queued for it.

    While some job is still to be created (from the first request to the last accepted
    create), a perfect client spends every request the key allows on a create or on the one
    poll that sees a task's end: jobs then finish at ``rate / 2`` per second, the physical
    limit. The figure is the requests of that span that did so for a job that ended with its
    true outcome (its accepted create, its first poll after the end), over what the key
    allowed in the span (:func:`allowed`).
    """
    accepted = [r.at for r in log if r.route in CREATES and r.status == 200]
    if not log or not accepted:
        return {"throughput": math.nan, "queue_span": 0.0}
    first, last = log[0].at, max(accepted)
    seen: set[str] = set()
    useful = 0
    for r in log:
        if r.at > last:
            break
        if r.status != 200 or r.task_id not in done:
            continue
        if r.route in CREATES:
            useful += 1
        elif r.route in QUERIES and r.task_id not in seen:
            task = sim.tasks[r.task_id]
            if r.at >= task.terminal_at:
                seen.add(r.task_id)
                useful += 1
    span = (last - first) * scale
    tasks = [sim.tasks[task_id] for task_id in done]
    return {"throughput": useful / allowed(span, limit), "queue_span": span,
            "useful_requests": useful,
            "throughput_ceiling": throughput_ceiling(tasks, first, last, limit, scale=scale)}


def throughput_ceiling(tasks: Sequence[Any], first: float, last: float,
                       limit: tuple[int, float], *, bound: float = 60.0,
                       share: float = 0.95, scale: float = 1.0) -> float:
    """The most the throughput figure can be, from ``first`` to ``last``, with a detection
    p95 within ``bound``: a bound, from the tasks' ``created`` and ``terminal_at``.

    Before its first poll nothing tells one task from another: that poll comes at age ``A``
    at most, the 5% quantile of the durations shown plus ``bound`` (else more than 5% of them
    are seen late, as in ``schedule.blind_floor``). A task still running at ``A`` is then
    polled without being found finished, and if that is before ``last`` the poll is spent
    inside the span on nothing the figure counts; up to the 5% of tasks allowed to be late
    may be spared. The ceiling is what is left of the key's allowance. It is proven for
    schedules that give every task the same first age, not for one that spends more of the
    lateness on the tasks created early and less on those first polled after ``last``.
    """
    if not tasks:
        return math.nan
    shown = sorted((task.terminal_at - task.created) * scale for task in tasks)
    age = shown[int((1 - share) * len(shown))] + bound
    spent = sum(1 for task in tasks
                if (task.created - first) * scale + age <= (last - first) * scale
                and (task.terminal_at - task.created) * scale > age)
    spared = math.floor((1 - share) * len(tasks))
    room = allowed((last - first) * scale, limit)
    return max(0, room - max(0, spent - spared)) / room


def allowed(span: float, limit: tuple[int, float]) -> int:
    """The most requests a sliding-window key of ``limit`` (the simulator's, and the gateway's
    per-key limit) accepts in a closed span of ``span`` seconds: ``count`` per window.

    Any ``per`` seconds hold at most ``count``, and ``count`` at the start of each window
    (0, per, 2 per, ...) are all accepted. A client paced at ``count / per`` a second gets
    ``span * count / per`` of them: the windows' bursts are the rest.
    """
    count, per = limit
    return count * (math.floor(span / per + 1e-9) + 1)


# -- tables ---------------------------------------------------------------------------------

ROWS: tuple[tuple[str, str, str], ...] = (
    # (figure, label, format); lower is better for every figure with a ratio
    ("jobs", "jobs run", "int"),
    ("time_scale", "time scale", "x"),
    ("requests_per_job", "requests per job", "2f"),
    ("r429", "429s", "int"),
    ("detection_p50", "detection p50 (s)", "1f"),
    ("detection_p95", "detection p95 (s)", "1f"),
    ("lost", "jobs lost", "int"),
    ("stuck", "stuck tasks (excluded)", "int"),
    ("tasks_created", "tasks created at the gateway", "int"),
    ("throughput", "throughput / limit, jobs queued", "pct"),
    ("throughput_ceiling", "its ceiling with a p95 within 60 s", "pct"),
    ("makespan", "last job done at (s)", "0f"),
    ("cpu_per_request_us", "client CPU per request (us)", "0f"),
    ("growth_mb", "peak memory growth (MB)", "1f"),
    ("kb_per_job", "peak memory growth per job (KB)", "1f"),
    ("max_stall_ms", "longest loop stall (ms)", "1f"),
    ("gc_longest_ms", "longest GC pause (ms)", "1f"),
)
RATIOS = frozenset({"requests_per_job", "r429", "detection_p50", "detection_p95",
                    "cpu_per_request_us", "kb_per_job"})


def fmt(value: Any, kind: str) -> str:
    """One figure as the tables show it."""
    if _missing(value):
        return "-"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "x":
        return f"{value:g}x"
    if kind == "pct":
        return f"{value:.0%}"
    return f"{value:,.{kind[0]}f}"


def ratio(mine: Any, theirs: Any) -> str:
    """``mine / theirs`` as ``0.12x``; "-" where it means nothing."""
    if _missing(mine) or _missing(theirs):
        return "-"
    if theirs == 0:
        return "-" if mine == 0 else "inf"
    return f"{mine / theirs:.2f}x"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def scenario_table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table: one row per figure, a column per client, then octovid's ratios."""
    clients = [name for name in ("octovid", "naive", "openai") if name in results]
    others = [name for name in clients if name != "octovid"]
    head = ["figure", *clients, *(f"octovid / {name}" for name in others)]
    lines = [_row(head), _row(["---"] * len(head))]
    for key, label, kind in ROWS:
        values = [results[name].get(key) for name in clients]
        if all(v is None for v in values):
            continue
        cells = [label, *(fmt(v, kind) for v in values)]
        mine = results.get("octovid", {}).get(key)
        cells += [ratio(mine, results[name].get(key)) if key in RATIOS else "" for name in others]
        lines.append(_row(cells))
    return "\n".join(lines)


def simple_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table of already formatted cells."""
    return "\n".join([_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)])


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
