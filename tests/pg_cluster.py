"""A throw-away PostgreSQL cluster for the tests: ``initdb`` into a temporary directory, the
server on a unix socket there (no TCP port to collide with anything), ``fsync`` off (nothing
survives the session), stopped and deleted at the end. PostgreSQL refuses to run as root, so
as root (CI) the cluster is run by ``nobody`` through ``runuser``. Where the binaries or
psycopg are missing the tests that need it skip with the reason, unless
``$LRFACE_REQUIRE_POSTGRES`` is set (``.ci/run``), which makes that a failure."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SUPERUSER = "lrface"
PORT = 54329  # names the socket file only: the server listens on no TCP address


def find_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: on PATH, else Debian's layout."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


class Cluster:
    """A running server; ``database()`` makes a new, empty database and returns its URL."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="lrface-pg-"))
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            if not shutil.which("runuser"):
                raise RuntimeError("running as root without runuser: cannot start PostgreSQL")
            shutil.chown(self.dir, "nobody")
            self._as_user = ["runuser", "-u", "nobody", "--"]
        self._names = itertools.count()
        data = self.dir / "data"
        self._run("initdb", "-D", data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-k {self.dir} -p {PORT} -c listen_addresses='' -c fsync=off"
        self._run("pg_ctl", "-D", data, "-o", options, "-l", self.dir / "log", "-w", "start")

    def _run(self, tool: str, *args) -> None:
        cmd = [*self._as_user, str(self.bindir / tool), *map(str, args)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{tool} failed: {done.stderr or done.stdout}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.dir}&port={PORT}"

    def database(self) -> str:
        import psycopg

        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.dir / "data", "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def start_cluster() -> Cluster:
    """A running cluster, or a skip (a failure under ``$LRFACE_REQUIRE_POSTGRES``) saying why
    there is none."""
    reason = None
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        reason = "psycopg 3 / psycopg_pool not installed (pip install -e '.[postgres]')"
    bindir = find_bin()
    if reason is None and bindir is None:
        reason = "PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql"
    if reason is None:
        try:
            return Cluster(bindir)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            reason = f"cannot start a throw-away PostgreSQL cluster: {exc}"
    if os.environ.get("LRFACE_REQUIRE_POSTGRES"):
        pytest.fail(reason)
    pytest.skip(reason)
