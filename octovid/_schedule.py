"""When to poll a task: the policy, what progress predicts, what finished tasks teach.

A poll costs a request from the key's budget; the only poll that is never wasted is the one that
finds the task finished. The schedule spends polls where they are likely to find one, within a
bound on how late a completion may be seen (``max_interval``):

* **Progress that agrees.** Two estimates of the end from the last three progress samples (timed
  by the answers' own ``status_update_time`` when they carry one; with fewer samples the
  task's start counts as progress 0) that agree within a refresh period (or a tenth of what
  remains): the next poll aims at the gateway's first refresh after that end, when it shows
  it (by the answers' stamps; without them, half to one refresh period after the end), even
  if that is further than ``max_interval`` away, but never more than ``8 * max_interval``
  ahead (a far end is checked again on the way). An end that passed less than one refresh ago
  still stands: the refresh that shows it may not have come yet. An end longer than every
  duration known for the model (below) does not count as agreed: progress that stalled and
  rose again agrees on such ends.
* **Progress that does not agree yet**, or a single sample (read against the start): the end
  is uncertain, and the next poll comes ``max_interval`` from now (less the jitter): the answer
  just showed the task running, so no completion can be older than that when it is polled,
  however early the end may come.
* **No agreed end, but a duration distribution for the model**: the durations of its finished
  tasks (the 256 most recent, from this run and from the journal's earlier runs), beside a prior
  of 40 durations from the family's public figures (:data:`PRIORS`: Veo, Sora, Grok, Vidu,
  Jimeng, Kling, Seedance), which stands in until 20 have finished and stays beyond the longest
  of them, so that a cold start has a distribution and a task older than every finished one is
  still judged by the family's tail. The figures may not be this gateway's (nor a
  simulator's): the first 8 tasks of a model are first polled after ``initial``, and a task
  seen to finish in under half the prior's shortest duration drops the prior (its model's
  tasks are polled again soon, on the geometric schedule until 20 have finished). The first
  poll after a create comes at the durations' 3% quantile plus ``max_interval``: a task that
  ends before that quantile is seen late, and on Veo's durations the fewest polls that see 95%
  of the tasks within the bound spend the whole allowance on that first gap (a first poll at
  the 5% quantile plus 30 s, then every 30 s, is within 0.1% of ``blind_optimum``'s floor in
  ``benchmarks/schedule.py``). After a poll at age ``a``, the next comes where 0.5% of
  the tasks still running at ``a`` have finished (read between the known durations:
  :meth:`Durations.reached`), plus ``max_interval``. Where completions are rare the gaps are
  long; where they are dense, about ``max_interval``; a late completion is one in two hundred
  per gap.
* **Nothing known** (a model of no known family before 20 of its tasks finished, a task older
  than every duration known, a stall or an end that passed without a distribution): geometric
  growth from ``initial`` by ``factor`` up to ``max_interval``, counted from the last change of
  progress.
* **The gateway's refresh period**: its stored state changes only every ``refresh`` seconds (15,
  Veo excepted: fetched live), so a task is never polled twice within one. When the answers
  carry the state's stamp, the next poll waits for the next refresh after that stamp, not a
  whole period after the answer.

Under a tight budget the watcher polls first the due task likely finished the earliest (its
agreed end, or the median of its model's durations beyond its age: :func:`likely_age`), and
lets creates go first while no due poll is likely to find its task finished.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections import deque
from collections.abc import Sequence
from typing import Any

import attrs

__all__ = ["PRIORS", "Durations", "Forecast", "PollPolicy", "estimate", "family_of", "likely_age",
           "prior_of", "refresh_of"]

_LEARNED = 20  # finished tasks of a model of no known family before its distribution is trusted
_KEPT = 256  # durations kept per model (the most recent)
_RISK = 0.005  # the chance, per gap, that a completion in it is seen more than max_interval late
# The share of all tasks the first poll may see late: the gap where lateness saves the most polls
# (the fewest polls that keep 95% within a bound put the whole 5% there). 2% is left for the
# later gaps' 0.5% each, the answers' own time, and a quantile read from a few hundred tasks.
_FIRST_RISK = 0.03
_PRIOR_POINTS = 40  # durations a family's prior stands for
_DEFAULT_INITIAL, _DEFAULT_MAX_INTERVAL = 5.0, 30.0  # the policy the priors are for
_REACH = 8  # an agreed end is aimed at up to this many max_intervals ahead
_LIVE_PREFIXES = ("veo",)  # families whose state the gateway fetches live on each query


def _seconds(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{attribute.name} must be a positive number of seconds, not {value!r}")


def _not_negative(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value >= 0
    ):
        raise ValueError(f"{attribute.name} must be a number of seconds >= 0, not {value!r}")


def _factor(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 10:
        raise ValueError(f"{attribute.name} must be a number from 1 to 10, not {value!r}")


def _jitter(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{attribute.name} must be a fraction from 0 to below 1, not {value!r}")


def _flag(_: Any, attribute: attrs.Attribute[Any], value: bool) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be True or False, not {value!r}")


def _optional_seconds(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None:
        _seconds(_, attribute, value)


@attrs.frozen
class PollPolicy:
    """When to poll a task (the rules are in ``octovid._schedule``'s docstring).

    Attributes:
        initial: The first interval when nothing is known of a task or its model.
        max_interval: The bound on how late a completion may be seen: the gap between polls
            once an end is due, and every gap while no end can be predicted. An end that the
            progress predicts and agrees on may be aimed at further away (up to 8 times this),
            and is checked on the way there.
        factor: The growth of the interval, from ``initial`` to ``max_interval``, while
            nothing is known.
        jitter: Each interval is stretched or shrunk by up to this fraction, so that tasks
            created together do not poll together.
        deadline: The default number of seconds a job may take in all (None: no limit).
        refresh: The gateway's state refresh period: a task is not polled twice within it
            (0: never skip), unless ``max_interval`` is shorter; with stamped answers, the next
            poll waits for the next refresh after the stamp. Veo tasks are fetched live and
            ignore it.
        priors: Whether each family's public durations (``octovid._schedule.PRIORS``) aim the
            polls of its tasks before any has finished, scaled down with an ``initial`` under
            5 s or a ``max_interval`` under 30 s; off, a model's first polls follow the
            geometric schedule until 20 of its tasks have finished.
    """

    initial: float = attrs.field(default=5.0, validator=_seconds)
    max_interval: float = attrs.field(default=30.0, validator=_seconds)
    factor: float = attrs.field(default=1.5, validator=_factor)
    jitter: float = attrs.field(default=0.1, validator=_jitter)
    deadline: float | None = attrs.field(default=3600.0, validator=_optional_seconds)
    refresh: float = attrs.field(default=15.0, kw_only=True, validator=_not_negative)
    priors: bool = attrs.field(default=True, kw_only=True, validator=_flag)

    def __attrs_post_init__(self) -> None:
        if self.max_interval < self.initial:
            raise ValueError(
                f"max_interval ({self.max_interval}) must not be below initial ({self.initial})"
            )

    def geometric(self, step: int, rng: random.Random) -> float:
        """The ``step``-th interval of the geometric schedule, jittered."""
        interval = min(self.max_interval, self.initial * self.factor ** step)
        return min(self.max_interval, interval * (1 + rng.uniform(-self.jitter, self.jitter)))


def refresh_of(policy: PollPolicy, model: str | None) -> float:
    """The refresh period to respect for a task of ``model`` (never above ``max_interval``)."""
    if model is not None and model.lower().startswith(_LIVE_PREFIXES):
        return 0.0
    return min(policy.refresh, policy.max_interval)


def estimate(samples: Sequence[tuple[float, int]]) -> float | None:
    """The loop time progress should reach 100, from (time, progress) samples; None if unknown."""
    if len(samples) < 2:
        return None
    (t0, p0), (t1, p1) = samples[0], samples[-1]
    if p1 <= p0 or t1 <= t0 or p1 >= 100:
        return None
    return t1 + (100 - p1) * (t1 - t0) / (p1 - p0)


PRIORS: dict[str, tuple[float, float, float]] = {
    "veo-fast": (30.0, 90.0, 180.0),
    "veo": (60.0, 240.0, 480.0),
    "sora": (120.0, 300.0, 900.0),
    "grok": (30.0, 120.0, 240.0),
    "vidu": (30.0, 120.0, 300.0),
    "jimeng": (60.0, 180.0, 360.0),
    "kling": (60.0, 300.0, 900.0),
    "seedance": (30.0, 180.0, 360.0),
}
"""Each family's durations from public reports, create to completion, in seconds: the 10th and
90th percentiles (a log-normal between them is the prior) and the longest."""

_FAMILIES = (
    ("doubao-seedance", "seedance"), *((name, name) for name in PRIORS if name != "veo-fast")
)


def family_of(model: str) -> str | None:
    """The family of ``model`` in :data:`PRIORS`, by the start of its name; None if none."""
    lowered = model.lower()
    for prefix, family in _FAMILIES:
        if lowered.startswith(prefix):
            return "veo-fast" if family == "veo" and "fast" in lowered else family
    return None


def prior_of(model: str, policy: PollPolicy) -> tuple[float, ...]:
    """The prior durations of ``model``'s family (sorted), or none for a model of no family.

    The figures are for the default policy (``initial`` 5 s, ``max_interval`` 30 s); a policy
    of shorter intervals (a time-scaled simulator, a gateway of quick jobs) scales them down
    with it, by the smaller of the two ratios.
    """
    family = family_of(model) if policy.priors else None
    if family is None:
        return ()
    scale = min(1.0, policy.max_interval / _DEFAULT_MAX_INTERVAL,
                policy.initial / _DEFAULT_INITIAL)
    low, high, longest = (seconds * scale for seconds in PRIORS[family])
    normal = statistics.NormalDist()
    sigma = (math.log(high) - math.log(low)) / (2 * normal.inv_cdf(0.9))
    mu = (math.log(high) + math.log(low)) / 2
    return tuple(
        min(longest, math.exp(mu + sigma * normal.inv_cdf((i + 0.5) / _PRIOR_POINTS)))
        for i in range(_PRIOR_POINTS)
    )


class Durations:
    """How long one model's finished tasks took, create to completion: the recent ones.

    A prior (:func:`prior_of`) stands in until 20 durations are learned, and stays beyond the
    longest learned one for good: the first tasks of a batch to finish are its fastest, and the
    prior keeps a tail for the others.
    """

    __slots__ = ("_learned", "_order", "_prior", "_sorted", "probes")

    def __init__(self, prior: Sequence[float] = ()) -> None:
        self._order: deque[float] = deque()  # learned ones, in arrival order, for forgetting
        self._learned: list[float] = []  # the same, sorted
        self._prior = sorted(prior)
        self._sorted: list[float] | None = None  # what the answers are read from, when known
        self.probes = 0  #: tasks first polled early to check the prior (the watcher counts)

    @property
    def confirmed(self) -> bool:
        """Whether the durations stand on what was learned: 20 of them, or no prior to check."""
        return not self._prior or len(self._order) >= _LEARNED

    def contradicted_by(self, seconds: float) -> bool:
        """Whether one duration says the prior is not this gateway's: under half its shortest."""
        return bool(self._prior) and seconds < self._prior[0] / 2

    def drop_prior(self) -> None:
        """Forget the prior: the distribution is what was learned, once 20 are."""
        self._prior = []
        self._sorted = None

    def __len__(self) -> int:
        return len(self._data())

    @property
    def usable(self) -> bool:
        """Whether the distribution may be used: a prior, or enough learned."""
        return bool(self._prior) or len(self._order) >= _LEARNED

    @property
    def longest(self) -> float:
        """The longest duration known (prior or learned); infinite if none."""
        data = self._data()
        return data[-1] if data else math.inf

    def add(self, seconds: float) -> None:
        """Learn one duration."""
        if not (math.isfinite(seconds) and seconds > 0):
            return
        if len(self._order) >= _KEPT:
            oldest = self._order.popleft()
            del self._learned[bisect.bisect_left(self._learned, oldest)]
        self._order.append(seconds)
        bisect.insort(self._learned, seconds)
        self._sorted = None

    def _data(self) -> list[float]:
        data = self._sorted
        if data is None:
            learned, prior = self._learned, self._prior
            if len(learned) < _LEARNED:
                data = sorted(learned + prior)
            else:
                data = learned + prior[bisect.bisect_right(prior, learned[-1]):]
            self._sorted = data
        return data

    def cdf(self, seconds: float) -> float:
        """The share of durations up to ``seconds``."""
        data = self._data()
        return bisect.bisect_right(data, seconds) / len(data)

    def quantile(self, q: float) -> float:
        """The duration below which a share ``q`` of tasks finished."""
        data = self._data()
        return data[min(len(data) - 1, max(0, math.ceil(q * len(data)) - 1))]

    def reached(self, age: float, share: float) -> float | None:
        """The age by which ``share`` of the tasks still running at ``age`` have finished.

        Read from the durations' cumulative share drawn as straight lines between them (the
        shortest one's share from one spacing before it), so that a share smaller than one
        duration's weight lands between two of them, not on the next. None beyond the longest.
        """
        data = self._data()
        count = len(data)
        if count < 2 or age >= data[-1]:
            return None
        # The share reaches (i + 1) / count at data[i], and 0 at ``start``, one spacing before.
        start = max(0.0, 2 * data[0] - data[1])
        after = bisect.bisect_right(data, age)
        low = data[after - 1] if after else start
        part = 0.0 if age <= low else (age - low) / (data[after] - low)
        done = (after + min(part, 1.0)) / count if age > start else 0.0
        goal = (done + share * (1 - done)) * count  # in durations
        i = min(count - 1, max(0, math.ceil(goal) - 1))
        low = data[i - 1] if i else start
        return max(age, low + (goal - i) * (data[i] - low))


class Forecast:
    """What is known of one task's end: from its progress, or from its model's history."""

    __slots__ = ("end", "spread")

    def __init__(self, end: float, spread: float) -> None:
        self.end = end  #: the loop time the task should be seen finished
        self.spread = spread  #: how uncertain that is, in seconds (one standard deviation)

    @classmethod
    def of(cls, samples: Sequence[tuple[float, int]], started: float | None,
           refresh: float) -> Forecast | None:
        """The forecast from (loop time, progress) samples, oldest first; None if none.

        Two estimates of the end are compared: from the last two samples, and from the first
        (or from the start, progress 0 then, if the first is above 0). A lone sample above 0
        is read against the start, with a wide spread: the task may have queued first.
        """
        if started is not None and len(samples) < 3 and samples and 0 < samples[0][1] < 100 and (
            samples[0][0] > started
        ):
            samples = [(started, 0), *samples]
        if len(samples) < 2:
            return None
        late = estimate(samples)
        if late is None:
            return None
        if len(samples) == 2:
            return cls(late, max(refresh, 0.3 * (late - samples[0][0])))
        early = estimate(samples[-2:])
        if early is None:
            return cls(late, max(refresh, 0.3 * (late - samples[0][0])))
        tolerance = max(refresh, 0.1 * (max(late, early) - samples[-1][0]))
        spread = abs(late - early) / 2
        if abs(late - early) <= tolerance:
            return cls((late + early) / 2, spread)
        return cls(max(late, early), max(spread, tolerance))

    def agreed(self, policy: PollPolicy) -> bool:
        """Whether the end is known well enough to aim one poll at it."""
        return 2 * self.spread <= policy.max_interval / 2


def learned_gap(durations: Durations, age: float, policy: PollPolicy, *,
                first: bool = False) -> float | None:
    """Seconds from a poll at ``age`` to the next one, by the model's finished tasks; or None.

    The ``first`` poll after the create, while no task of the model has finished at ``age``,
    may see ``_FIRST_RISK`` of the tasks late; the others ``_RISK`` of those still running (a
    task watched or resumed part way through is in the second case).
    """
    if not durations.usable:
        return None
    if first and durations.cdf(age) == 0.0:
        target: float | None = durations.quantile(_FIRST_RISK)
    else:
        target = durations.reached(age, _RISK)
    if target is None:
        return None  # older than every task seen finish: nothing to go by
    return max(0.0, target - age) + policy.max_interval


def likely_age(durations: Durations, last_age: float) -> float | None:
    """The age by which a task not finished at ``last_age`` is more likely finished than not.

    None without a usable distribution.
    """
    if not durations.usable:
        return None
    before = durations.cdf(last_age)
    if before >= 1.0:
        return last_age  # older than every task seen finish: it is likely at its end
    return durations.quantile(before + 0.5 * (1 - before))


def reach(policy: PollPolicy) -> float:
    """How far ahead an agreed end may be aimed at."""
    return _REACH * policy.max_interval
