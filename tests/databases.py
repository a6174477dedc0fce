"""A fresh PostgreSQL database for each test: created on the session's server, dropped after."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def admin(server_url: str) -> psycopg.Connection:
    """A connection to the server, once it accepts them (it listens a moment before it does)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return psycopg.connect(server_url, autocommit=True)
        except psycopg.OperationalError as exc:
            if "starting up" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """The URL of a new, empty database on ``server_url``'s server; dropped afterwards."""
    name = f"octovid_test_{secrets.token_hex(6)}"
    with admin(server_url) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server_url, name)
    finally:
        with admin(server_url) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
