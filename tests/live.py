"""Live servers for the tests that depend on how a real server behaves (issue 14, design §11):
a throwaway PostgreSQL server of our own, which the tests stop, freeze and restart at will, and
the demo project served from it by gunicorn, as in production.

``ThrowawayPostgres`` uses Debian's server binaries, a fresh data directory and a free port.
``serve_demo`` migrates a database, makes the demo data and serves it; it yields the base URL and
the demo's ids and key. ``call`` sends one request and records what came back and how long it took
(status 0: no answer within the client's timeout, or the connection failed).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .pgbouncer import free_port

ROOT = Path(__file__).resolve().parent.parent


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

    def processes(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, writers…)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout
        return [postmaster, *(int(pid) for pid in children.split())]

    def freeze(self) -> None:
        """Stop every server process (SIGSTOP): the kernel still accepts connections and
        acknowledges packets, but nothing answers — a hung server, not a dead one."""
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.processes():
            os.kill(pid, signal.SIGCONT)

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


@contextmanager
def serve_demo(
    url: str, extra_env: dict[str, str] | None = None, workers: int = 2, server: str = "gunicorn"
) -> Iterator[dict[str, Any]]:
    """The demo project on database ``url`` under gunicorn (sync workers: WSGI) or uvicorn
    (ASGI), DEBUG off, persistent connections, with its own cache directory; yields {"base",
    "run_url", "api_key", …}.
    ``TASKRUNS_OVERRIDES`` in ``extra_env`` (JSON) changes the app's settings (tests.live_settings)."""
    cache_dir = tempfile.mkdtemp(prefix="taskruns-live-cache-")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_DEBUG": "0",
        "DJANGO_CONN_MAX_AGE": "60",
        "DJANGO_CACHE_DIR": cache_dir,
        "DJANGO_SETTINGS_MODULE": "tests.live_settings",
        **(extra_env or {}),
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    made = subprocess.run(
        [sys.executable, "manage.py", "taskruns_demo", "--json"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    demo = json.loads(made.stdout)
    port = free_port()
    if server == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--workers", str(workers)]
        command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
        command += ["--timeout-graceful-shutdown", "2"]
    else:
        command = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi"]
        command += ["-w", str(workers), "-b", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(base)
        yield {
            "base": base,
            **demo,
            "run_url": demo["run_url"].replace("http://127.0.0.1:8000", base),
        }
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(cache_dir, ignore_errors=True)


@dataclass
class Answer:
    status: int
    code: str | None
    seconds: float
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def wait_until_answering(base: str, tries: int = 100) -> None:
    """Wait (up to ``tries`` × 0.2 s) until a server just started answers its schema URL."""
    for _ in range(tries):
        try:
            urllib.request.urlopen(f"{base}/api/schema/", timeout=2)
            return
        except OSError:
            time.sleep(0.2)


def call(
    method: str,
    url: str,
    key: str,
    body: Any = None,
    *,
    timeout: float = 10,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request with the demo's key; what came back and how long it took."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(headers or {})},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, payload, got = error.code, error.read(), dict(error.headers)
    except OSError:  # connection reset, timeout
        status, payload, got = 0, b"", {}
    seconds = time.monotonic() - started
    try:
        code = json.loads(payload)["errors"][0]["code"] if status >= 400 else None
    except (ValueError, KeyError, IndexError, TypeError):
        code = None
    return Answer(status, code, seconds, got, payload)
