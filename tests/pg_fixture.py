"""A real PostgreSQL server for the tests that run the index and the ledger on it.

`postgres` (session scope) starts one server from Debian's `postgresql` package: a new cluster
in a temporary directory, listening on a free port of 127.0.0.1 only (no Unix socket), trusting
local connections, without fsync (a test cluster is thrown away). postgres refuses to run as
root, so under euid 0 the cluster belongs to the `postgres` user and its commands run as that
user. Each caller asks it for a fresh database (`new_database`); `pg_url` gives one per
module, and `new_db_url` runs a test once on SQLite and once on PostgreSQL. The server is
stopped and its directory removed when the session ends.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

#: The unprivileged user a root test run starts the server as (Debian's package creates it).
_SERVER_USER = "postgres"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail(
            "PostgreSQL's server binaries are missing (no /usr/lib/postgresql/*/bin/initdb): "
            "install them with `apt-get install -y postgresql` (.ci/run does this on CI)"
        )
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One running cluster; `new_database` hands out empty databases on it."""

    def __init__(self, root: Path) -> None:
        self.bin = _bin_dir()
        self.root = root
        self.data = root / "data"
        self.port = 0
        self._names = itertools.count(1)
        self._as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam(_SERVER_USER)
            os.chown(root, user.pw_uid, user.pw_gid)
            self._as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.root,
            **self._as_user,
        )
        if done.returncode != 0:
            log = self.data / "server.log"
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}\n{tail}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        for attempt in range(3):
            self.port = _free_port()
            options = " ".join(
                [
                    f"-c port={self.port}",
                    "-c listen_addresses=127.0.0.1",
                    "-c unix_socket_directories=''",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=200",
                ]
            )
            try:
                self._run(
                    "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data),
                    "-l", str(self.data / "server.log"), "-o", options,
                )  # fmt: skip
                return
            except RuntimeError:
                if attempt == 2:  # the port was taken between choosing and binding it
                    raise

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.data))

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of `database` on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "test") -> str:
        """Creates an empty database and returns its SQLAlchemy URL."""
        name = f"{prefix}_{next(self._names)}"
        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def sql(self, url: str, statement: str) -> list[tuple[Any, ...]]:
        """Runs one statement on the database of `url` (autocommit) and returns its rows."""
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            cursor = conn.execute(statement)
            return list(cursor.fetchall()) if cursor.description else []


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (see the module docstring)."""
    # Not under pytest's basetemp: that directory is private to the running user, and the
    # server's user must reach its data directory.
    root = Path(tempfile.mkdtemp(prefix="depin-pg-"))
    server = PostgresServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_url(postgres: PostgresServer) -> str:
    """A fresh database on the session's server for the requesting module."""
    return postgres.new_database("module")


#: The backends `new_db_url` runs a test on.
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def new_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """Makes empty databases for one test, on SQLite (files in tmp_path) and then, in a second
    run of the test, on the session's PostgreSQL server: call it with a name, get a URL."""
    if request.param == "sqlite":
        return lambda name: f"sqlite:///{tmp_path / name}.sqlite3"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database
