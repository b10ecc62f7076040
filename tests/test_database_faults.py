"""The database goes away during a stream of PATCHes, and comes back — reached directly, and
through PgBouncer in transaction mode (which stays up while PostgreSQL stops).

The test starts its own PostgreSQL (Debian's binaries, a fresh data directory and port), serves
the demo app from it under gunicorn, and sends PATCHes that each add one unique state key while
it stops and restarts the server. While the database is down every request must fail fast with a
503 `database_unavailable` (no 500, no hang); once it is back the app recovers without a restart;
every PATCH answered 2xx is in the database, and no PATCH is partly applied (each applied PATCH
added exactly one key and one version).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from .pgbouncer import PgBouncer

pytestmark = [pytest.mark.faults]

ROOT = Path(__file__).resolve().parent.parent
REQUEST_TIMEOUT = 10  # a request slower than this counts as a hang
FAST = 5.0  # while the database is down, answers must come within this many seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_postgres(*command: str, **kwargs) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *command], check=True, capture_output=True, text=True, **kwargs)


class ThrowawayPostgres:
    """A PostgreSQL server of our own, stopped and started at will."""

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        assert binaries, "Debian's PostgreSQL server binaries are needed for this test"
        self.bin = Path(binaries[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="taskruns-faults-"))
        shutil.chown(self.dir, "postgres") if os.geteuid() == 0 else None
        self.data = self.dir / "data"
        self.port = free_port()
        as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"
        )
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.dir / "log"),
            "start",
        )

    def stop(self) -> None:
        as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"], capture_output=True
        )
        if os.geteuid() == 0:
            subprocess.run(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "stop",
                ],
                capture_output=True,
            )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def database():
    server = ThrowawayPostgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture(params=["direct", "through PgBouncer"])
def database_url(request, database):
    """The app's way to the database: direct, or through Debian's PgBouncer in transaction mode
    (which stays up while PostgreSQL stops), then without prepared statements."""
    if request.param == "direct":
        yield database.url, {}
        return
    bouncer = PgBouncer(database.port)
    bouncer.start()
    try:
        yield bouncer.url(), {"DJANGO_DB_PREPARE_THRESHOLD": "off"}
    finally:
        bouncer.stop()


@pytest.fixture
def app(database, database_url):
    url, extra = database_url
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_DEBUG": "0", "DJANGO_CONN_MAX_AGE": "60", **extra}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    demo = json.loads(
        subprocess.run(
            [sys.executable, "manage.py", "taskruns_demo", "--json"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--timeout",
            "30",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/api/schema/", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        yield {"base": base, **demo}
    finally:
        server.terminate()
        server.wait(timeout=30)


class Stream:
    """Sends PATCHes adding unique keys; records (key, status, code, seconds) for each."""

    def __init__(self, app) -> None:
        self.url = app["run_url"].replace("http://127.0.0.1:8000", app["base"])
        self.key = app["api_key"]
        self.results: list[tuple[str, int, str | None, float]] = []
        self.count = 0

    def patch(self) -> tuple[str, int, str | None, float]:
        self.count += 1
        key = f"k{self.count}"
        body = json.dumps({"state": {key: self.count}}).encode()
        request = urllib.request.Request(
            self.url,
            data=body,
            method="PATCH",
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        except OSError:  # connection reset, timeout: recorded as status 0
            status, payload = 0, b""
        elapsed = time.monotonic() - started
        try:
            code = json.loads(payload)["errors"][0]["code"] if status >= 400 else None
        except (ValueError, KeyError, IndexError, TypeError):
            code = None
        result = (key, status, code, elapsed)
        self.results.append(result)
        return result


def test_database_outage_gives_fast_503s_and_loses_or_half_writes_nothing(database, app):
    stream = Stream(app)
    for _ in range(30):
        assert stream.patch()[1] == 200

    # Stop the database while a background writer is mid-stream.
    stop_writer = threading.Event()
    background = Stream(app)
    background.count = 100_000  # its own keys

    def write_until_stopped():
        while not stop_writer.is_set():
            background.patch()

    writer = threading.Thread(target=write_until_stopped)
    writer.start()
    time.sleep(0.5)
    database.stop()
    down = [stream.patch() for _ in range(20)]
    database.start()
    recovered_after = None
    for attempt in range(50):
        if stream.patch()[1] == 200:
            recovered_after = attempt
            break
        time.sleep(0.2)
    after = [stream.patch() for _ in range(30)]
    stop_writer.set()
    writer.join(timeout=60)

    everything = stream.results + background.results
    statuses = {status for _key, status, _code, _elapsed in everything}
    assert 500 not in statuses and not any(500 <= s < 600 and s != 503 for s in statuses), statuses
    assert all(status == 503 and code == "database_unavailable" for _k, status, code, _e in down), down
    assert all(elapsed < FAST for _k, _s, _c, elapsed in down), [round(e, 2) for *_, e in down]
    assert max(elapsed for *_, elapsed in everything) < REQUEST_TIMEOUT
    assert recovered_after is not None, "the app did not recover without a restart"
    assert all(status == 200 for _k, status, _c, _e in after)

    with psycopg.connect(database.url.replace("postgres://", "postgresql://")) as conn:
        state, version = conn.execute(
            "SELECT state, version FROM taskruns_taskrun WHERE id = %s", [app["run_id"]]
        ).fetchone()
    acknowledged = {key for key, status, _c, _e in everything if 200 <= status < 300}
    assert acknowledged <= set(state), sorted(acknowledged - set(state))[:10]
    # Each applied PATCH added one key and one version: nothing is half applied.
    assert version == 1 + len(state)
    failed = {key for key, status, _c, _e in everything if not 200 <= status < 300}
    print(
        f"\nfault test: {len(everything)} PATCHes; {len(acknowledged)} answered 2xx, all stored; "
        f"{len(failed)} failed ({sorted(statuses)}), of which {len(failed & set(state))} had committed "
        f"before the connection dropped; {len(down)} sent while down, all 503 in "
        f"{max(e for *_, e in down):.2f}s at most; recovered after {recovered_after} retries"
    )
