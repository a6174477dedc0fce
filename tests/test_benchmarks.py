"""The benchmark's smoke mode runs end to end and writes its figures."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from octovid.testing._workloads import JOBS

BENCHMARK = Path(__file__).parent.parent / "benchmarks" / "jobs.py"


@pytest.mark.timeout(300)
def test_smoke_run_writes_every_figure(tmp_path: Path) -> None:
    """`jobs.py --smoke` runs every client and section and saves JSON and markdown."""
    subprocess.run(
        [sys.executable, str(BENCHMARK), "--smoke", "--out", str(tmp_path)],
        check=True, capture_output=True, text=True, timeout=280,
    )
    results = json.loads((tmp_path / "jobs-smoke.json").read_text())
    grok = results["scenarios"]["grok-20"]
    assert {"octovid", "naive"} <= grok.keys()
    assert grok["octovid"]["jobs"] == 20
    assert grok["octovid"]["lost"] == 0
    assert grok["octovid"]["requests_per_job"] >= 2  # a create and a poll at least
    assert results["scenarios"]["tight-20"]["octovid"]["throughput"] is not None
    assert results["watch"]["polls"] > 0
    assert results["cpu"]["ratio"] > 0
    assert "### Issue 8's targets" in (tmp_path / "jobs-smoke.md").read_text()


@pytest.mark.timeout(120)
def test_the_schedule_model_runs_every_scenario_and_saves_nothing_when_told(tmp_path: Path) -> None:
    """`schedule.py --jobs 30 --no-save` prints each scenario's figures for each schedule."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARK.parent / "schedule.py"), "--jobs", "30", "--no-save"],
        check=True, capture_output=True, text=True, timeout=110,
    )
    for name in ("## sora", "## grok", "## veo-warm", "## tight"):
        assert name in done.stdout
    assert "| requests per job |" in done.stdout and "every 30 s" in done.stdout
    assert "Floors for a detection p95 within 30 s" in done.stdout


def _blind_schedule_cost(durations: list[float], ages: list[float], bound: float) -> tuple[
        float, float]:
    """Requests per job and the share seen more than ``bound`` late of one list of poll ages."""
    polls = late = 0
    for duration in durations:
        seen = next(i for i, age in enumerate(ages) if age >= duration)
        polls += seen + 1
        late += ages[seen] - duration > bound
    return 1 + polls / len(durations), late / len(durations)


def _best_by_enumeration(durations: list[float], bound: float, share: float) -> float:
    """The fewest requests per job of any list of whole-second poll ages: every list tried."""
    last = math.ceil(max(durations))
    best = float("inf")
    for mask in range(1 << (last - 1)):  # which of the ages 1 .. last-1 are polled; last is
        ages = [age for age in range(1, last) if mask >> (age - 1) & 1] + [last]
        requests, late = _blind_schedule_cost(durations, ages, bound)
        if late <= 1 - share + 1e-9:
            best = min(best, requests)
    return best


def test_the_age_alone_floor_is_a_lower_bound_of_every_schedule_and_close_to_the_best() -> None:
    """`blind_optimum` is at most the best of every poll list, and near a good one on Veo's."""
    sys.path.insert(0, str(BENCHMARK.parent))
    try:
        from schedule import blind_optimum
    finally:
        sys.path.remove(str(BENCHMARK.parent))
    rng = random.Random(3)
    skewed = [min(14.0, 0.5 + rng.lognormvariate(1.6, 0.5)) for _ in range(300)]
    for durations, bound, share in (
        (skewed, 2, 0.95), (skewed, 3, 0.9), ([2, 2, 3, 5, 8, 13, 13, 13, 14, 15], 3, 0.8),
        ([5] * 9 + [15], 1, 0.9),
    ):
        floor = blind_optimum([float(d) for d in durations], float(bound), share)
        assert floor <= _best_by_enumeration(durations, bound, share) + 1e-9
    # Off the grid: one poll at 60.45 s sees both groups within 60 s, at 2 requests a job.
    assert blind_optimum([0.5] * 50 + [60.4] * 50, 60.0) <= 2.0
    # Veo's durations: one schedule that meets the p95 is the 5% quantile + 30 s, then every
    # 30 s; no schedule does better than the floor, and this one is within 2% of it.
    veo = sorted(JOBS["veo"].draw_duration(rng) for _ in range(20_000))
    first = veo[len(veo) // 20 - 1] + 30.0
    ages = [first + 30.0 * k for k in range(math.ceil((veo[-1] - first) / 30.0) + 1)]
    requests, late = _blind_schedule_cost(veo, ages, 30.0)
    assert late <= 0.05
    assert requests * 0.98 <= blind_optimum(veo, 30.0) <= requests


def test_a_runs_instructions_are_cachegrinds_summary_and_a_file_without_one_fails(
    tmp_path: Path,
) -> None:
    """`jobs._instructions` reads the count from cachegrind's summary line, or raises."""
    sys.path.insert(0, str(BENCHMARK.parent))
    try:
        from jobs import _instructions
    finally:
        sys.path.remove(str(BENCHMARK.parent))
    out = tmp_path / "cachegrind.out"
    out.write_text("desc: I1 cache: none\ncmd: python clients.py\nevents: Ir\n"
                   "fl=clients.py\n12 345\nsummary: 2636974117\n")
    assert _instructions(out) == 2_636_974_117
    out.write_text("events: Ir\n")
    with pytest.raises(RuntimeError, match="no summary"):
        _instructions(out)
