"""Real Redis and PostgreSQL servers for the tests: given by URL, or started here on free ports.

`.ci/run` starts both before the suite (``python tests/servers.py start DIR`` prints the
``export`` lines) and stops them after it; on a developer's machine the session fixtures in
conftest.py start them on first use when ``OCTOVID_TEST_REDIS_URL`` or
``OCTOVID_TEST_POSTGRES_URL`` is not set. The binaries come from the distribution's packages
(``apt-get install redis-server postgresql``); a test that needs one that is not installed fails
with a message saying so, it is never skipped silently.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REDIS_ENV = "OCTOVID_TEST_REDIS_URL"
POSTGRES_ENV = "OCTOVID_TEST_POSTGRES_URL"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within 30 s")


def _binary(name: str, *patterns: str) -> str:
    found = shutil.which(name) or next(
        (path for pattern in patterns for path in sorted(glob.glob(pattern), reverse=True)), None
    )
    if found is None:
        raise RuntimeError(
            f"{name} is not installed: apt-get install redis-server postgresql "
            "(.ci/run does this on a fresh machine)"
        )
    return found


class RedisServer:
    """``redis-server`` on a free loopback port, without persistence. ``stop``/``start`` keep
    the port, so a test can take Redis away mid-run and bring it back."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = _binary("redis-server")
        self._process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self._process, "redis-server")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None


class PostgresServer:
    """A throw-away PostgreSQL cluster on a free loopback port, trusting local connections.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user
    that the distribution's package creates."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"postgresql://octovid@127.0.0.1:{self.port}/postgres"
        self._process: subprocess.Popen[bytes] | None = None
        self._own: pathlib.Path | None = None

    def _as_owner(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        return {"user": "postgres", "group": "postgres", "extra_groups": []}

    def start(self) -> None:
        initdb = _binary("initdb", "/usr/lib/postgresql/*/bin/initdb")
        postgres = _binary("postgres", "/usr/lib/postgresql/*/bin/postgres")
        if os.geteuid() == 0:
            # The postgres user must reach the cluster: a folder of its own right under /tmp,
            # whatever the caller's folder's parents allow.
            self.workdir = self._own = pathlib.Path(tempfile.mkdtemp(prefix="octovid-postgres-"))
            owner = pwd.getpwnam("postgres")
            os.chown(self.workdir, owner.pw_uid, owner.pw_gid)
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        if not data.exists():
            subprocess.run(
                [initdb, "-D", str(data), "-U", "octovid", "--auth=trust",
                 "--no-sync", "-E", "UTF8"],
                check=True, stdout=subprocess.DEVNULL, **self._as_owner(),  # type: ignore[call-overload]
            )
        self._process = subprocess.Popen(
            [postgres, "-D", str(data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.workdir}",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **self._as_owner(),  # type: ignore[call-overload]
        )
        _wait_for_port(self.port, self._process, "postgres")

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            self._process.wait(30)
            self._process = None
        if self._own is not None:
            shutil.rmtree(self._own, ignore_errors=True)
            self._own = None


def main(argv: list[str]) -> int:
    """``servers.py start DIR`` starts both and prints ``export`` lines; ``stop DIR`` ends them."""
    if len(argv) != 2 or argv[0] not in {"start", "stop"}:
        print("usage: servers.py start|stop DIR", file=sys.stderr)
        return 2
    root = pathlib.Path(argv[1]).resolve()
    pids = root / "pids"
    if argv[0] == "stop":
        for line in pids.read_text().split() if pids.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line), 15)
        return 0
    redis, postgres = RedisServer(root / "redis"), PostgresServer(root / "postgres")
    redis.start()
    postgres.start()
    started = [server._process for server in (redis, postgres)]
    pids.write_text(" ".join(str(process.pid) for process in started if process is not None))
    print(f"export {REDIS_ENV}={redis.url} {POSTGRES_ENV}={postgres.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
