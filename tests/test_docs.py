"""The reference site: it builds with warnings as errors and documents every public name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import octovid
import octovid.sync
import octovid.testing

ROOT = Path(__file__).parent.parent
REFERENCE = ROOT / "docs" / "reference"


def documented() -> set[str]:
    """The names the reference pages render with mkdocstrings (``::: name``)."""
    names = set()
    for page in REFERENCE.glob("*.md"):
        names.update(re.findall(r"^::: ([\w.]+)$", page.read_text(), flags=re.MULTILINE))
    return names


def test_every_public_name_has_its_reference_entry():
    """Each name of octovid's, octovid.testing's and octovid.sync's __all__ is rendered."""
    names = documented()
    wanted = {f"octovid.{name}" for name in octovid.__all__ if name != "__version__"}
    wanted |= {f"octovid.testing.{name}" for name in octovid.testing.__all__}
    wanted |= {f"octovid.sync.{name}" for name in octovid.sync.__all__}
    assert wanted - names == set()


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    """``mkdocs build --strict`` succeeds: every docstring parses, every reference resolves."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WARNING" not in result.stderr
    events = (tmp_path / "reference" / "events" / "index.html").read_text()
    assert 'id="octovid.JobFinished"' in events
    assert 'id="octovid.testing.Simulator"' in (
        tmp_path / "reference" / "testing" / "index.html"
    ).read_text()
