"""Real-world workloads for the simulator: how long jobs take, how they report, what goes wrong.

:data:`JOBS` holds the behaviour of each kind of job at the gateway (a duration distribution
with a long tail, progress patterns, refresh period, the "unknown" period, failure rate), drawn
from the figures in WORKLOADS.md; :data:`EXTRA_JOBS` the kinds WORKLOADS.md has no figures for
(Kling, Seedance), from public reports. A :class:`Workload` is those tables, the models a client
sends, the route its create bodies go to, and the :class:`Conditions` of the run.
:data:`WORKLOADS` names the presets of the unified route: one per kind, ``mixed``, and each of
them with each condition set of :data:`CONDITIONS` (``sora+faults``). :data:`ROUTE_WORKLOADS`
names those of the other routes, after their route: ``openai/kling``, ``openai/seedance``,
``openai/sora``, ``openai/mixed``, ``native/seedance``, each with each condition set too.

Every figure here is in the workload's seconds; ``Simulator(time_scale=...)`` divides them all.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping
from typing import Any, Literal, get_args

import attrs

from ._faults import Conditions
from ._tasks import PATTERNS, UNIFIED_FAMILIES, Pattern, family_of

WorkloadRoute = Literal["unified", "openai", "native"]
"""The route family a workload's create bodies are for: ``/v1/video/create``, ``/v1/videos``,
``/v1/video/generations``."""


def kind_of(model: str) -> str | None:
    """The kind of job a model makes: its family, with Veo's fast models apart ("veo-fast")."""
    family = family_of(model)
    if family == "veo" and "fast" in model.lower():
        return "veo-fast"
    return family


def _patterns(
    value: Mapping[Pattern, float] | tuple[tuple[Pattern, float], ...],
) -> tuple[tuple[Pattern, float], ...]:
    pairs = tuple(value.items()) if isinstance(value, Mapping) else tuple(value)
    return tuple((pattern, float(weight)) for pattern, weight in pairs)


@attrs.frozen(kw_only=True)
class Jobs:
    """How the jobs of one kind behave at the gateway, in the workload's seconds.

    Attributes:
        typical: the typical duration range, create to the end: the 10th and 90th percentiles
            of the distribution.
        tail: the longest a job takes.
        tail_share: the share of jobs drawn uniformly between ``typical[1]`` and ``tail`` (busy
            hours, long queues); the rest is log-normal, fitted so that the whole keeps
            ``typical`` as its 10th-90th percentiles, and clipped at ``tail``.
        patterns: progress patterns with their weights.
        refresh: the gateway's state refresh period (0: fetched live from the upstream).
        unknown_for: seconds after create in which queries report "unknown".
        failure_rate: the share of jobs that end failed.
    """

    typical: tuple[float, float]
    tail: float
    patterns: tuple[tuple[Pattern, float], ...] = attrs.field(converter=_patterns)
    refresh: float = 15.0
    unknown_for: float = 15.0
    failure_rate: float = 0.03
    tail_share: float = 0.03

    def __attrs_post_init__(self) -> None:
        low, high = self.typical
        if not 0 < low < high <= self.tail:
            raise ValueError(f"need 0 < typical low < high <= tail, not {self.typical}, {self}")
        if not 0 <= self.tail_share < 0.1:
            raise ValueError(f"tail_share must be in [0, 0.1), not {self.tail_share}")
        if not self.patterns or any(
            pattern not in PATTERNS or weight <= 0 for pattern, weight in self.patterns
        ):
            raise ValueError(f"patterns must be known patterns with positive weights: {self}")
        if min(self.refresh, self.unknown_for) < 0 or not 0 <= self.failure_rate <= 1:
            raise ValueError(f"refresh, unknown_for or failure_rate out of range: {self}")

    def draw_duration(self, rng: random.Random) -> float:
        """A job's duration in seconds: log-normal within ``typical``, a long tail beyond."""
        if rng.random() < self.tail_share:
            return rng.uniform(self.typical[1], self.tail)
        mu, sigma = self._log_normal()
        return min(rng.lognormvariate(mu, sigma), self.tail)

    def draw_pattern(self, rng: random.Random) -> Pattern:
        """A progress pattern, by the weights."""
        patterns = [pattern for pattern, _ in self.patterns]
        return rng.choices(patterns, weights=[weight for _, weight in self.patterns])[0]

    def _log_normal(self) -> tuple[float, float]:
        """The log-normal's mu and sigma that put the mixture's p10 and p90 at ``typical``."""
        low, high = self.typical
        below = 0.1 / (1 - self.tail_share)  # of the log-normal part, under ``low``
        above = (0.1 - self.tail_share) / (1 - self.tail_share)  # over ``high``
        normal = statistics.NormalDist()
        z_low, z_high = normal.inv_cdf(below), normal.inv_cdf(1 - above)
        sigma = (math.log(high) - math.log(low)) / (z_high - z_low)
        return math.log(low) - z_low * sigma, sigma


_MINUTE = 60.0
JOBS: dict[str, Jobs] = {
    "veo-fast": Jobs(
        typical=(30.0, 90.0),
        tail=3 * _MINUTE,
        patterns={"none": 1.0},
        refresh=0.0,  # Veo tasks are fetched live from the upstream
        unknown_for=0.0,
    ),
    "veo": Jobs(
        typical=(1 * _MINUTE, 4 * _MINUTE),
        tail=8 * _MINUTE,
        patterns={"none": 1.0},
        refresh=0.0,
        unknown_for=0.0,
    ),
    "sora": Jobs(
        typical=(2 * _MINUTE, 5 * _MINUTE),
        tail=15 * _MINUTE,
        patterns={"jumping": 0.5, "queued_then_rising": 0.3, "linear": 0.2},
        failure_rate=0.05,
    ),
    "grok": Jobs(
        typical=(30.0, 120.0),
        tail=4 * _MINUTE,
        patterns={"linear": 0.6, "queued_then_rising": 0.3, "stalling": 0.1},
    ),
    "vidu": Jobs(
        typical=(30.0, 120.0),
        tail=5 * _MINUTE,
        patterns={"linear": 0.5, "queued_then_rising": 0.4, "stalling": 0.1},
    ),
    "jimeng": Jobs(
        typical=(1 * _MINUTE, 3 * _MINUTE),
        tail=6 * _MINUTE,
        patterns={"linear": 0.4, "stalling": 0.4, "queued_then_rising": 0.2},
    ),
}
"""The behaviour of each kind of job at the gateway (WORKLOADS.md's table)."""

EXTRA_JOBS: dict[str, Jobs] = {
    # Kling: 1-5 minutes typical, longer at busy hours (its queue is known to hold jobs for
    # many minutes); the upstream reports no progress of its own, so the gateway's is coarse.
    "kling": Jobs(
        typical=(1 * _MINUTE, 5 * _MINUTE),
        tail=15 * _MINUTE,
        patterns={"queued_then_rising": 0.5, "linear": 0.3, "stalling": 0.2},
    ),
    # Seedance (Doubao, Volcengine Ark): 30 s to 3 minutes for a 5 s clip.
    "seedance": Jobs(
        typical=(30.0, 3 * _MINUTE),
        tail=6 * _MINUTE,
        patterns={"queued_then_rising": 0.5, "linear": 0.5},
    ),
}
"""The kinds of job WORKLOADS.md has no figures for, from public reports; every workload has
them (see ``Workload.jobs``) beside :data:`JOBS`."""


def _models(
    value: Mapping[str, float] | tuple[tuple[str, float], ...],
) -> tuple[tuple[str, float], ...]:
    pairs = tuple(value.items()) if isinstance(value, Mapping) else tuple(value)
    return tuple((model, float(weight)) for model, weight in pairs)


def _jobs(
    value: Mapping[str, Jobs] | tuple[tuple[str, Jobs], ...],
) -> tuple[tuple[str, Jobs], ...]:
    pairs = dict(value.items() if isinstance(value, Mapping) else value)
    return tuple({**JOBS, **EXTRA_JOBS, **pairs}.items())


@attrs.frozen(kw_only=True)
class Workload:
    """A named, real-world workload: how each kind of job behaves, what a client sends, faults.

    Pass it to ``Simulator(workload=...)``, by itself or by its name in :data:`WORKLOADS`; the
    simulator then draws each task's duration, outcome and progress pattern from the table
    entry of its model's kind. Durations are in the workload's seconds: ``time_scale`` divides
    them.

    Attributes:
        name: the preset's name, for reports (``sora``, ``mixed+faults``).
        models: the models a client of this workload sends, with their weights: see
            :meth:`bodies`. A client may send others: every kind has an entry in ``jobs``.
        jobs: the behaviour of each kind of job (see :func:`kind_of`); kinds not given keep
            the entry of :data:`JOBS` or :data:`EXTRA_JOBS`.
        conditions: the random faults of the run.
        route: the route family :meth:`bodies` writes create bodies for by default; the
            unified route serves Veo, Sora, Grok, Vidu and Jimeng only.
    """

    name: str
    models: tuple[tuple[str, float], ...] = attrs.field(converter=_models)
    jobs: tuple[tuple[str, Jobs], ...] = attrs.field(default=(), converter=_jobs)
    conditions: Conditions = attrs.field(factory=Conditions)
    route: WorkloadRoute = "unified"

    def __attrs_post_init__(self) -> None:
        if not self.models or any(
            kind_of(model) is None or weight <= 0 for model, weight in self.models
        ):
            raise ValueError(f"models must be known models with positive weights: {self.models}")
        if self.route not in get_args(WorkloadRoute):
            raise ValueError(f"route must be unified, openai or native, not {self.route!r}")
        _check_route(self.route, self.models)

    def jobs_for(self, model: str) -> Jobs | None:
        """The behaviour of ``model``'s jobs; None for a model of no family."""
        kind = kind_of(model)
        return None if kind is None else dict(self.jobs)[kind]

    def with_conditions(
        self, conditions: Conditions | str | None = None, /, **changes: Any
    ) -> Workload:
        """This workload under other conditions, named after them.

        Args:
            conditions: a :class:`Conditions`, or the name of a set in :data:`CONDITIONS`, in
                place of the current ones; None keeps the current ones.
            changes: fields of :class:`Conditions` to change on top.

        ``WORKLOADS["sora"].with_conditions("faults")`` is ``WORKLOADS["sora+faults"]``, and
        ``WORKLOADS["sora+faults"].with_conditions(stuck_rate=0.0)`` is named
        ``sora+faults+stuck_rate=0.0``. Replaced conditions drop their name.
        """
        base_name = self.name.split("+", 1)[0]
        if isinstance(conditions, str):
            name, base = f"{base_name}+{conditions}", CONDITIONS[conditions]
        elif conditions is not None:
            name, base = f"{base_name}+{conditions.describe()}", conditions
        else:
            name, base = self.name, self.conditions
        if changes:
            name += "+" + ",".join(f"{key}={value}" for key, value in sorted(changes.items()))
        return attrs.evolve(self, name=name, conditions=attrs.evolve(base, **changes))

    def with_jobs(self, kind: str, **changes: Any) -> Workload:
        """This workload with the entry of ``kind`` in ``jobs`` changed (``patterns=...``)."""
        jobs = dict(self.jobs)
        jobs[kind] = attrs.evolve(jobs[kind], **changes)
        return attrs.evolve(self, jobs=jobs)

    def bodies(
        self, count: int, *, seed: int | None = None, route: WorkloadRoute | None = None
    ) -> list[dict[str, Any]]:
        """``count`` create bodies whose models follow the workload's weights.

        Args:
            count: how many.
            seed: seeds the draw of the models.
            route: the route family the bodies are for (None: the workload's ``route``):
                "unified" ``{model, prompt, images: []}``, "openai" (``/v1/videos``, as JSON)
                and "native" ``{model, prompt}``.

        Raises:
            ValueError: the unified route does not serve one of the workload's models.
        """
        route = self.route if route is None else route
        if route not in get_args(WorkloadRoute):
            raise ValueError(f"route must be unified, openai or native, not {route!r}")
        _check_route(route, self.models)
        rng = random.Random(seed)
        models = [model for model, _ in self.models]
        weights = [weight for _, weight in self.models]
        extra: dict[str, Any] = {"images": []} if route == "unified" else {}
        return [
            {"model": model, "prompt": f"{self.name} job {index}", **extra}
            for index, model in enumerate(rng.choices(models, weights=weights, k=count))
        ]

    def describe(self) -> str:
        """One line naming the workload and the conditions that are on."""
        return f"{self.name}: {self.conditions.describe()}"


def _check_route(route: str, models: tuple[tuple[str, float], ...]) -> None:
    if route != "unified":
        return
    refused = [model for model, _ in models if family_of(model) not in UNIFIED_FAMILIES]
    if refused:
        raise ValueError(f"the unified route serves no {', '.join(refused)}: use another route")


CONDITIONS: dict[str, Conditions] = {
    "sporadic-429": Conditions(sporadic_429=0.03),
    "storms": Conditions(storms=((10.0, 1.5), (60.0, 2.0), (180.0, 1.0))),
    # The run WORKLOADS.md describes: one create in twenty refused by a saturated upstream
    # (two in five of those with Retry-After: 1), a storm, 5xx from a proxy, lost connections
    # on both sides of the create, and tasks that never finish.
    "faults": Conditions(
        sporadic_429=0.05,
        sporadic_429_creates_only=True,
        sporadic_retry_after=0.4,
        sporadic_retry_after_value=1.0,
        storms=((10.0, 1.5),),
        error_rate=0.03,
        drop_before_rate=0.01,
        drop_after_rate=0.01,
        stuck_rate=0.01,
    ),
}
"""Condition sets to run any workload under: ``WORKLOADS["<name>+<condition set>"]``."""

_BASE = (
    Workload(name="veo-fast", models={"veo3.1-fast": 0.7, "veo3-fast": 0.3}),
    Workload(name="veo", models={"veo3.1": 0.6, "veo3.1-pro": 0.4}),
    Workload(name="sora", models={"sora-2": 0.7, "sora-2-pro": 0.3}),
    Workload(
        name="grok",
        models={"grok-video-3": 0.6, "grok-video-3-pro": 0.3, "grok-video-3-max": 0.1},
    ),
    Workload(name="vidu", models={"viduq2-pro": 0.4, "viduq2-turbo": 0.3, "viduq1": 0.3}),
    Workload(name="jimeng", models={"jimeng-video-3.0": 0.7, "jimeng-video-2.0": 0.3}),
    Workload(
        name="mixed",
        models={
            "veo3.1-fast": 0.2,
            "veo3.1": 0.1,
            "sora-2": 0.25,
            "grok-video-3": 0.15,
            "viduq2-pro": 0.15,
            "jimeng-video-3.0": 0.15,
        },
    ),
)

WORKLOADS: dict[str, Workload] = {
    **{workload.name: workload for workload in _BASE},
    **{
        f"{workload.name}+{name}": workload.with_conditions(name)
        for workload in _BASE
        for name in CONDITIONS
    },
}
"""The presets by name: ``veo-fast``, ``veo``, ``sora``, ``grok``, ``vidu``, ``jimeng``,
``mixed`` (every family of the unified route), and each of them ``+sporadic-429``, ``+storms``
or ``+faults``."""

_ROUTE_BASE = (
    Workload(
        name="openai/kling",
        models={"kling-v2-1": 0.4, "kling-v2-5-turbo": 0.4, "kling-v2-master": 0.2},
        route="openai",
    ),
    Workload(
        name="openai/seedance",
        models={"doubao-seedance-1-0-pro": 0.6, "doubao-seedance-1-0-lite-t2v": 0.4},
        route="openai",
    ),
    Workload(name="openai/sora", models={"sora-2": 0.7, "sora-2-pro": 0.3}, route="openai"),
    Workload(
        name="openai/mixed",
        models={
            "sora-2": 0.25,
            "veo3.1-fast": 0.1,
            "grok-video-3": 0.1,
            "viduq2-pro": 0.1,
            "jimeng-video-3.0": 0.1,
            "kling-v2-1": 0.2,
            "doubao-seedance-1-0-pro": 0.15,
        },
        route="openai",
    ),
    Workload(name="native/seedance", models={"seedance-2": 1.0}, route="native"),
)

ROUTE_WORKLOADS: dict[str, Workload] = {
    **{workload.name: workload for workload in _ROUTE_BASE},
    **{
        f"{workload.name}+{name}": workload.with_conditions(name)
        for workload in _ROUTE_BASE
        for name in CONDITIONS
    },
}
"""The presets of the other routes, named after their route: ``openai/kling``,
``openai/seedance``, ``openai/sora``, ``openai/mixed`` (every family on ``/v1/videos``),
``native/seedance`` (Seedance 2 on ``/v1/video/generations``), each also with each condition
set (``openai/kling+faults``)."""


def workload_named(name: str) -> Workload:
    """The preset of this name, in :data:`WORKLOADS` or :data:`ROUTE_WORKLOADS`.

    Raises:
        ValueError: no preset has this name.
    """
    found = WORKLOADS.get(name) or ROUTE_WORKLOADS.get(name)
    if found is None:
        bases = [each for each in (*WORKLOADS, *ROUTE_WORKLOADS) if "+" not in each]
        raise ValueError(f"unknown workload {name!r}: one of {', '.join(bases)}, +conditions")
    return found
