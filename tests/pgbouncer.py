"""Debian's PgBouncer in transaction mode, for the tests that run through it (design: the
production topology, issue 19).

``PgBouncer(server_port)`` starts one as the ``postgres`` user (it refuses to run as root) on a
free port of 127.0.0.1, in front of the PostgreSQL server at ``server_port``, with a config of its
own in a fresh directory: transaction pooling, trust authentication, short connect and wait
timeouts (so that a stopped server is an error, not a wait).

``python -m tests.pgbouncer [pytest arguments]`` runs pytest with the demo settings through one
in front of 127.0.0.1:5432, with persistent connections (``DJANGO_CONN_MAX_AGE=60``) and no
prepared statements (the production profile's default): ``make test-pgbouncer`` runs the contract
tests, the concurrency and feed tests that way. The test database is created through PgBouncer and
dropped directly afterwards (PgBouncer keeps server connections to it open).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
#: The database name the run through PgBouncer uses (its test database is test_<this>).
DATABASE = "taskruns_pgbouncer"
DIRECT_ADMIN_URL = os.environ.get("PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_postgres(*command: str) -> list[str]:
    """``command`` run as the postgres user when we are root (PgBouncer refuses root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


class PgBouncer:
    """A PgBouncer of our own in transaction mode in front of 127.0.0.1:``server_port``."""

    def __init__(self, server_port: int) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        assert Path(binary).exists(), "Debian's pgbouncer package is needed (apt-get install pgbouncer)"
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="taskruns-pgbouncer-"))
        (self.dir / "userlist.txt").write_text('"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.dir}\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 1000\n"
            "default_pool_size = 20\n"
            "server_connect_timeout = 2\n"
            "server_login_retry = 1\n"
            "query_wait_timeout = 3\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            for path in self.dir.iterdir():
                shutil.chown(path, "postgres")

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        subprocess.run(as_postgres(self.binary, "-d", str(self.dir / "pgbouncer.ini")), check=True)
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"pgbouncer did not start: {self.log()}")

    def stop(self) -> None:
        pidfile = self.dir / "pgbouncer.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().strip())
            subprocess.run(["kill", str(pid)], capture_output=True)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text() if path.exists() else ""


def drop_test_database() -> None:
    with psycopg.connect(DIRECT_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "test_{DATABASE}" WITH (FORCE)')


def main(arguments: list[str]) -> int:
    """Run pytest through a PgBouncer in front of 127.0.0.1:5432; its exit status."""
    bouncer = PgBouncer(5432)
    drop_test_database()
    bouncer.start()
    env = {
        **os.environ,
        "DATABASE_URL": bouncer.url(DATABASE),
        "DJANGO_CONN_MAX_AGE": "60",
        "DJANGO_DB_PREPARE_THRESHOLD": "off",
        "TASKRUNS_THROUGH_PGBOUNCER": "1",
    }
    try:
        # --reuse-db: pytest-django would drop the test database at the end through PgBouncer,
        # which still holds server connections to it; it is dropped directly below instead.
        command = [sys.executable, "-m", "pytest", "--reuse-db", *arguments]
        return subprocess.run(command, cwd=ROOT, env=env).returncode
    finally:
        bouncer.stop()
        drop_test_database()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
