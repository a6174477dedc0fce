"""README.md's Python samples run as written, against a simulator, each in its own process.

Every ```python block is run: as a script (``python sample.py``) with the environment a user
has after ``octovid simulate``'s export line (``OCTOVID_BASE_URL``, ``OCTOVID_API_KEY``), plus
``OCTOVID_REDIS_URL`` / ``OCTOVID_POSTGRES_URL`` of real servers for the samples that read them;
or, when the README marks it ``<!-- readme: pytest ... -->``, as a test file under pytest with the
block marked ``<!-- readme: pyproject -->`` as its project's pyproject.toml. No block is skipped.
All of them start at once (they mostly wait on the simulator), then each test reads its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from octovid.testing import Simulator

README = Path(__file__).parent.parent / "README.md"
FENCE = re.compile(
    r"(?:^<!-- readme: (?P<mark>[^\n]*?) -->\n)?^```(?P<lang>\w*)\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
MARKS = ("pytest", "pyproject")
SERVERS = {"OCTOVID_REDIS_URL": "redis_url", "OCTOVID_POSTGRES_URL": "postgres_url"}


@attrs.frozen
class Block:
    """One fenced block of the README."""

    line: int
    lang: str
    code: str
    mark: str | None

    @property
    def name(self) -> str:
        return f"README.md:{self.line}"

    @property
    def under_pytest(self) -> bool:
        return self.mark is not None and self.mark.split()[0] == "pytest"


def blocks(text: str) -> list[Block]:
    """Every fenced block of ``text``, with the line its code starts on and its mark."""
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start("code")) + 1
        found.append(Block(line, match["lang"], match["code"], match["mark"]))
    return found


ALL = blocks(README.read_text(encoding="utf-8"))
PYTHON = [block for block in ALL if block.lang == "python"]


def test_the_readme_has_python_samples_and_only_known_marks():
    """The samples are found (a parsing slip cannot pass for 'nothing to run'); marks are known."""
    assert len(PYTHON) >= 8
    assert all(b.mark is None or b.mark.split()[0] in MARKS for b in ALL)
    assert [b.lang for b in ALL if b.mark == "pyproject"] == ["toml"]


def test_no_sample_overrides_the_key_from_the_environment():
    """No sample hard-codes a key (``api_key="sk-..."`` would override OCTOVID_API_KEY)."""
    assert not [b.name for b in PYTHON if re.search(r"api_key=['\"]", b.code)]


def environment(
    simulator: Simulator, text: str, server: Callable[[str], str]
) -> dict[str, str]:
    """A user's environment after the simulator's export line, plus the servers ``text`` reads.

    ``server(fixture_name)`` gives a real server's URL (a fixture, started only when needed).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTOVID_")}
    env.update(OCTOVID_BASE_URL=simulator.url, OCTOVID_API_KEY=simulator.api_key,
               NO_COLOR="1", PYTHONDONTWRITEBYTECODE="1")
    for variable, fixture in SERVERS.items():
        if variable in text:
            env[variable] = server(fixture)
    return env


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    """The gateway the samples talk to, as ``octovid simulate`` would serve it."""
    with Simulator(duration=(0.2, 0.6), seed=11).run_in_thread() as sim:
        yield sim


@pytest.fixture(scope="module")
def runs(
    simulator: Simulator, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Every sample, started at once, each in a folder of its own."""
    env = environment(simulator, README.read_text(encoding="utf-8"), request.getfixturevalue)
    pyproject = next(b.code for b in ALL if b.mark == "pyproject")
    started: dict[str, subprocess.Popen[str]] = {}
    for block in PYTHON:
        folder = tmp_path_factory.mktemp(f"readme-{block.line}")
        env["XDG_DATA_HOME"] = str(folder / "data")
        if block.under_pytest:
            (folder / "pyproject.toml").write_text(pyproject)
            (folder / "test_sample.py").write_text(block.code)
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                       "test_sample.py"]
        else:
            (folder / "sample.py").write_text(block.code)
            command = [sys.executable, "sample.py"]
        started[block.name] = subprocess.Popen(
            command, cwd=folder, env=dict(env), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
    yield started
    for process in started.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.timeout(150)
@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.name)
def test_the_sample_runs_as_written(block: Block, runs: dict[str, subprocess.Popen[str]]):
    """The sample exits 0 (a test file: its tests pass), printing what it says it prints."""
    out, err = runs[block.name].communicate(timeout=140)
    assert runs[block.name].returncode == 0, f"{block.name} failed:\n{out[-2000:]}{err[-3000:]}"
    if block.under_pytest:
        assert re.search(r"^\d+ passed", out, re.MULTILINE), out
        assert "failed" not in out and "warning" not in out.lower(), out
    else:
        assert out.strip(), f"{block.name} printed nothing"
        assert "Traceback" not in err, err


def test_samples_that_read_a_server_url_get_a_real_servers(simulator, request):
    """A README that reads OCTOVID_REDIS_URL gets the redis_url fixture's server in the env."""
    asked: list[str] = []

    def server(fixture: str) -> str:
        asked.append(fixture)
        return request.getfixturevalue(fixture)

    plain = environment(simulator, "no servers here", server)
    assert asked == [] and "OCTOVID_REDIS_URL" not in plain
    env = environment(simulator, 'url = os.environ["OCTOVID_REDIS_URL"]', server)
    assert asked == ["redis_url"]
    assert env["OCTOVID_REDIS_URL"].startswith("redis://")
    assert env["OCTOVID_BASE_URL"] == simulator.url
