"""The simulator's task model: the plan a task draws at create, and its state at any instant.

A task's plan is fixed when it is created: its duration, outcome, progress pattern and the
gateway's refresh grid. :func:`view` derives the state a query sees at a given instant from the
plan alone, in O(1): nothing runs per task between queries.
"""

from __future__ import annotations

import math
import random
from typing import Any, Literal, get_args

import attrs

Family = Literal["veo", "sora", "grok", "vidu", "jimeng", "kling", "seedance"]
"""The upstream families, told apart by the model's name (see :func:`family_of`)."""

Outcome = Literal["completed", "failed"]
Phase = Literal["unknown", "queued", "running", "completed", "failed"]
"""The state of a task, before each family or route words it."""

Pattern = Literal["linear", "queued_then_rising", "jumping", "stalling", "none"]
"""How a task's progress moves before it ends.

- ``linear``: rises evenly from 0 at create.
- ``queued_then_rising``: 0 (status queued) through a queue phase, then rises evenly.
- ``jumping``: 0, then one jump to 90, then the end (as Sora reports it).
- ``stalling``: rises, holds at one value below 100 for a long stretch, rises again.
- ``none``: the unified query carries no progress at all (Veo's shape never does).
"""

FAMILIES: tuple[Family, ...] = get_args(Family)
UNIFIED_FAMILIES: frozenset[Family] = frozenset({"veo", "sora", "grok", "vidu", "jimeng"})
"""The families the unified create serves (PROTOCOL.md section 1); every route serves the rest."""
_PREFIXED: tuple[Family, ...] = ("veo", "sora", "grok", "vidu", "jimeng")
KLING_MODELS = frozenset(
    {
        "kling-v1",
        "kling-v1-5",
        "kling-v1-6",
        "kling-v2-master",
        "kling-v2-1",
        "kling-v2-1-master",
        "kling-v2-5-turbo",
        "kling-v2-6",
        "kling-video-o1",
    }
)
"""Kling's model names. Kling is told by its exact names, not a prefix: ``kling-v2`` is no
Kling model (v2.0 is ``kling-v2-master``), and the gateway has no channel for it."""
PHASES: tuple[Phase, ...] = get_args(Phase)
PATTERNS: tuple[Pattern, ...] = get_args(Pattern)
FAILURE_REASONS = (
    "content policy violation",
    "upstream generation error",
    "upstream task timed out",
)
TIMEOUT_REASON = "任务超时（1440分钟）"  # noqa: RUF001 - "task timed out (1440 minutes)", as written
_QUEUED_SHARE = 0.1  # linear, jumping and stalling tasks say "queued" for this share of the time


def family_of(model: str) -> Family | None:
    """The family a model belongs to, by the start of its name; None for no family.

    Doubao's Seedance models (``doubao-seedance-1-0-pro``) and ``seedance-2`` are "seedance";
    Kling is recognised by :data:`KLING_MODELS` only.
    """
    lowered = model.lower()
    if lowered.startswith("kling"):
        return "kling" if lowered in KLING_MODELS else None
    if lowered.startswith(("seedance", "doubao-seedance")):
        return "seedance"
    return next((family for family in _PREFIXED if lowered.startswith(family)), None)


@attrs.define
class SimTask:
    """A task of the simulator: its plan, and how often it was polled.

    Instants are the simulator's clock (``time.monotonic()`` unless a clock was given), after
    time scaling: a duration is in the seconds the run really took (multiply by the
    simulator's ``time_scale`` for the workload's). Wall times, those the answers carry, run at
    the workload's pace from the wall time at start: ``pace`` wall seconds a clock second.
    """

    id: str  # the id the create answer gave
    family: Family
    model: str
    body: dict[str, Any]  # the create body, as sent
    created: float  # the clock at create
    wall_created: float  # the wall time at create
    duration: float  # seconds from create to the end, as drawn
    outcome: Outcome
    reason: str | None  # the failure reason, if the outcome is "failed"
    terminal_at: float  # the instant from which queries see the end; inf if stalled or stuck
    wall_terminal_at: float  # the same instant in wall time
    upstream_id: str | None = None  # the other id the gateway reports: Veo query id, Grok task_id
    polls: int = 0  # queries answered with its state, on any query route
    polls_after_terminal: int = 0  # queries answered once the end was visible
    pattern: Pattern = "linear"  # how its progress moves
    queued_for: float = 0.0  # queued_then_rising: seconds in the queue, progress 0
    step_at: float = math.inf  # jumping: seconds to the jump; stalling: to the stall
    step_level: float = 0.0  # the progress (0 to 1) jumped to, or held through the stall
    stall_for: float = 0.0  # stalling: seconds the progress holds
    frozen_after: float = math.inf  # stuck: seconds after which its state no longer moves
    refresh: float = 0.0  # the gateway's refresh period for it; 0 for live state
    ticks_from: float = 0.0  # an instant of its refresh grid: refreshes at ticks_from + k * refresh
    unknown_for: float = 0.0  # seconds after create in which queries say "unknown"
    route: str = "create"  # created on: "create", "remix", "videos_create" or "native_create"
    row_id: int = 0  # the gateway's integer row id, shown as data.id by the native route
    remixed_from: str | None = None  # remix: the id of the task it remixes
    reason_in_url: bool = False  # once failed, its result-URL slot holds the failure reason
    pace: float = 1.0  # wall seconds a clock second: the simulator's time scale

    @property
    def stuck(self) -> bool:
        """Whether the task was drawn stuck: running forever, its progress frozen."""
        return self.frozen_after != math.inf


@attrs.frozen
class View:
    """The state of a task as one query sees it."""

    phase: Phase
    fraction: float  # of the work done, 0 to 1
    wall: float  # the wall time of the state seen: status_update_time
    reported: bool = True  # whether the unified query carries a progress


@attrs.frozen
class Steps:
    """A pattern's own parameters for one task: see the fields of the same name on SimTask."""

    queued_for: float = 0.0
    step_at: float = math.inf
    step_level: float = 0.0
    stall_for: float = 0.0


def draw_steps(pattern: Pattern, duration: float, rng: random.Random) -> Steps:
    """Draw the pattern's own parameters for a task of ``duration`` seconds."""
    if pattern == "queued_then_rising":
        return Steps(queued_for=rng.uniform(0.2, 0.5) * duration)
    if pattern == "jumping":
        return Steps(step_at=rng.uniform(0.5, 0.9) * duration, step_level=0.9)
    if pattern == "stalling":
        stall_for, level = rng.uniform(0.3, 0.6) * duration, rng.uniform(0.4, 0.95)
        return Steps(step_at=level * (duration - stall_for), step_level=level, stall_for=stall_for)
    return Steps()


def visible_after(
    duration: float, refresh: float, ticks_from: float, created: float, unknown_for: float
) -> float:
    """Seconds from create until queries see the end: the first refresh tick at or after it."""
    seen = duration
    if refresh:
        end = created + duration
        seen = ticks_from + math.ceil((end - ticks_from) / refresh) * refresh - created
    return max(seen, unknown_for)


def view(task: SimTask, now: float) -> View:
    """The state a query at instant ``now`` sees of ``task``."""
    reported = task.pattern != "none"
    if now >= task.terminal_at:
        return View(task.outcome, 1.0, task.wall_terminal_at, reported)
    elapsed = now - task.created
    if elapsed < task.unknown_for:
        return View("unknown", 0.0, task.wall_created, reported)
    if task.refresh:
        # The gateway shows the task as its last refresh tick saw it, or as created.
        elapsed = max(elapsed - (now - task.ticks_from) % task.refresh, 0.0)
    elapsed = min(elapsed, task.frozen_after)
    phase, fraction = _progress(task, elapsed)
    return View(phase, min(fraction, 0.99), task.wall_created + elapsed * task.pace, reported)


def _progress(task: SimTask, elapsed: float) -> tuple[Phase, float]:
    """The phase and fraction done ``elapsed`` seconds after create, before the end."""
    duration = task.duration
    if duration <= 0:
        return "running", 1.0
    if task.pattern == "queued_then_rising":
        if elapsed < task.queued_for:
            return "queued", 0.0
        return "running", (elapsed - task.queued_for) / (duration - task.queued_for)
    if task.pattern == "jumping":
        fraction = task.step_level if elapsed >= task.step_at else 0.0
        return ("queued" if elapsed < _QUEUED_SHARE * duration else "running"), fraction
    if task.pattern == "stalling":
        rise = duration - task.stall_for
        if elapsed < task.step_at:
            fraction = elapsed / rise
        elif elapsed < task.step_at + task.stall_for:
            fraction = task.step_level
        else:
            fraction = (elapsed - task.stall_for) / rise
    else:
        fraction = elapsed / duration
    return ("queued" if fraction < _QUEUED_SHARE else "running"), fraction
