"""A private PostgreSQL server for tests that stop, restart or replicate the database.

The machine's own server (127.0.0.1:5432) is shared by every test and must never be stopped;
this starts a throwaway cluster of the same PostgreSQL version in a folder of the test's, on a
port of its own, with `initdb` and `pg_ctl`. As root, the server runs as the ``postgres`` user
(PostgreSQL refuses to run as root). ``standby()`` adds a streaming replica made with
`pg_basebackup`.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tests.helpers import ROOT, free_port


def _bindir() -> Path:
    """Debian's folder of the server programs (newest version), else wherever pg_ctl is."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if versions:
        return Path(versions[-1])
    found = shutil.which("pg_ctl")
    if not found:
        raise RuntimeError("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
    return Path(found).parent


class PrivatePostgres:
    """One PostgreSQL cluster in ``folder``, listening on 127.0.0.1 only, trust authentication."""

    def __init__(self, folder: Path, *, port: int | None = None) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = port or free_port()
        self.log = folder / "postgres.log"
        self.bin = _bindir()

    # Commands ---------------------------------------------------------------------------------

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and result.returncode:
            raise RuntimeError(f"{program} failed: {result.stderr or result.stdout}\n{self.tail()}")
        return result

    def _own(self) -> None:
        """Give the folder to the server's user (PostgreSQL will not run as root)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            for path in self.folder.rglob("*"):
                shutil.chown(path, "postgres", "postgres")
        # The test's tmp_path parents are private to root; the server must reach its folder.
        for parent in self.folder.parents:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)

    def init(self) -> "PrivatePostgres":
        self._own()
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: disconnect everyone and shut down cleanly; ``immediate``: as a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # Databases --------------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True
        )

    def create_database(self, name: str) -> str:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def standby(self, folder: Path) -> "PrivatePostgres":
        """A streaming replica of this (running) server, started, in ``folder``."""
        replica = PrivatePostgres(folder)
        replica._own()
        replica._run(
            "pg_basebackup",
            "-D",
            str(replica.data),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-X",
            "stream",
            "-c",
            "fast",  # checkpoint at once, not spread over minutes after a migration's writes
            "-R",  # standby.signal and primary_conninfo: it follows this server
        )
        replica.start()
        return replica


@contextmanager
def migrated_postgres() -> Iterator[tuple[PrivatePostgres, str]]:
    """A private PostgreSQL server (which a test may stop and crash) with the project's database
    migrated on it: the server and the database's URL. A standby made with ``standby`` may
    live beside it, in ``server.folder.parent``, which is removed afterwards.

    Its folder is not under pytest's tmp_path: a pytest session starting meanwhile makes
    /tmp/pytest-of-<user> private again, and the server, running as the postgres user, would
    lose its files mid-test."""
    folder = Path(tempfile.mkdtemp(prefix="tidportal-pg-"))
    server = PrivatePostgres(folder / "primary").init()
    server.start()
    try:
        url = server.create_database("tidportal")
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tidportal.settings.test"}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env={**env, "DATABASE_URL": url},
            check=True,
            capture_output=True,
            timeout=300,
        )
        yield server, url
    finally:
        server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
