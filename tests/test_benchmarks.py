"""The benchmark's smoke mode runs end to end and writes its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
