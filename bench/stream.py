"""Live-stream listeners on PostgreSQL: fan-out latency, connections, and what they cost PATCHes.

Usage (from the project root, after `make setup`; PostgreSQL at 127.0.0.1 and `wrk`):

    .venv/bin/python -m bench.stream [--listeners 10 100 1000] [--workers 2] [--seconds 5]

The production split: the API under gunicorn (WSGI sync workers, as `bench.run` serves it) and the
streams under uvicorn (ASGI) on a second port, both on the bench database. For each number N of
listeners, and two layouts — all N on one run, and spread one per run over min(N, 200) runs
(several per run past 200) — it opens N SSE connections to uvicorn (asyncio, in this process),
waits until each has its first frame, then:

- counts the server's connections to the database while the N listeners sit idle (expected:
  one listening connection per server process, plus its reader threads, whatever N is);
- sends 20 PATCHes, one at a time, to runs the listeners watch, and times each listener's frame
  from the moment the PATCH was answered (its transaction committed), p50 and p99 over all frames
  (a frame may arrive before the answer: then 0);
- drives PATCHes through gunicorn with wrk (2 threads, 16 connections) for --seconds at the
  watched runs, and reports requests/s and p50 beside the same with no listener attached, in the
  same run (every PATCH's notification then reaches the listeners, which read the run).

Prints a table and the command to rerun it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from typing import Any

from tests.live import wait_until_answering

from . import run as bench

PATCHES = 20
STREAM_PORT = bench.PORT + 1


@contextmanager
def uvicorn(workers: int, port: int, settings: dict | None = None):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "BENCH_TASKRUNS": json.dumps(settings or {}),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--workers", str(workers)]
        + [
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "1",
        ]
        + ["--limit-max-requests", "100000000", "--backlog", "4096"],
        cwd=bench.ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_answering(f"http://127.0.0.1:{port}")
        yield
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


class Listeners:
    """N SSE connections; for each, the time each state frame's version arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[int, str, int], float] = {}  # (listener, run, version) -> time
        self.ready = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.refused: dict[str, int] = {}  # status lines of streams that did not start
        # Connections are opened 50 at a time (each until its first frame), as clients arrive.
        self.opening = asyncio.Semaphore(50)

    async def listen(self, number: int, path: str, key: str) -> None:
        await self.opening.acquire()
        reader, writer = await asyncio.open_connection("127.0.0.1", STREAM_PORT, limit=2**22)
        request = f"GET {path}stream/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        run = path.rstrip("/").rsplit("/", 1)[1]
        first = True
        status = (await reader.readline()).decode().strip()
        if " 200 " not in f"{status} ":
            self.refused[status] = self.refused.get(status, 0) + 1
            self.opening.release()
            writer.close()
            return
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                if line.startswith(b"data: {") and b'"version"' in line:
                    version = json.loads(line[6:])["version"]
                    self.arrivals[(number, run, version)] = time.perf_counter()
                    if first:
                        self.ready, first = self.ready + 1, False
                        self.opening.release()
        finally:
            writer.close()


@contextmanager
def notify_trigger_disabled():
    import psycopg

    with psycopg.connect(bench.DATABASE_URL.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute("ALTER TABLE taskruns_taskrun DISABLE TRIGGER taskruns_run_notify")
        try:
            yield
        finally:
            conn.execute("ALTER TABLE taskruns_taskrun ENABLE TRIGGER taskruns_run_notify")


def database_connections() -> int:
    import psycopg

    name = bench.DATABASE_URL.rsplit("/", 1)[1]
    with psycopg.connect(bench.ADMIN_URL.replace("postgres://", "postgresql://")) as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        return int(conn.execute(query, [name]).fetchone()[0])


def patch(path: str, key: str, number: int) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{bench.PORT}{path}",
        data=json.dumps({"state": {"bench": number}}).encode(),
        method="PATCH",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


async def scenario(data: dict, paths: list[str], listeners: int, seconds: int) -> dict[str, Any]:
    crowd = Listeners()
    watched = [paths[n % len(paths)] for n in range(listeners)]
    crowd.tasks = [asyncio.create_task(crowd.listen(n, path, data["key"])) for n, path in enumerate(watched)]
    started = time.perf_counter()
    while crowd.ready < listeners and time.perf_counter() - started < 120:
        await asyncio.sleep(0.05)
    if crowd.ready < listeners:
        raise SystemExit(f"only {crowd.ready} of {listeners} listeners started; refused: {crowd.refused}")
    await asyncio.sleep(1)
    idle_connections = await asyncio.to_thread(database_connections)
    delays = []
    targets = sorted(set(watched))
    for number in range(PATCHES):
        path = targets[number % len(targets)]
        answer = await asyncio.to_thread(patch, path, data["key"], number)
        answered = time.perf_counter()
        run, version = answer["id"], answer["version"]
        expected = [n for n, watched_path in enumerate(watched) if watched_path == path]
        deadline = answered + 30
        while time.perf_counter() < deadline and any(
            (n, run, version) not in crowd.arrivals for n in expected
        ):
            await asyncio.sleep(0.002)
        delays += [max(0.0, crowd.arrivals.get((n, run, version), deadline) - answered) for n in expected]
    loaded = await asyncio.to_thread(bench.wrk, targets, "PATCH", data["key"], seconds, 2, 16, False, 0)
    for task in crowd.tasks:
        task.cancel()
    await asyncio.gather(*crowd.tasks, return_exceptions=True)
    delays.sort()
    return {
        "idle_connections": idle_connections,
        "p50_ms": 1000 * statistics.median(delays),
        "p99_ms": 1000 * delays[min(len(delays) - 1, int(len(delays) * 0.99))],
        "rps": bench.requests_per_second(loaded),
        "patch_p50_ms": loaded["p50_us"] / 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listeners", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--workers", type=int, default=2, help="uvicorn processes (gunicorn: 5 workers)")
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    data = bench.set_up("on")
    one_run = [bench.TARGETS["taskruns"]["run"].format(run=data["runs"][0], **data)]
    spread = [bench.TARGETS["taskruns"]["run"].format(run=run, **data) for run in data["runs"]]
    rows = []
    with bench.serving(data, 5), uvicorn(args.workers, STREAM_PORT):
        bench.wrk(one_run, "PATCH", data["key"], 1, 2, 16, False, 0)  # warm up
        for layout, paths in (("one run", one_run), ("spread", spread)):
            # What the NOTIFY trigger itself costs, before any listener: the same load without it.
            with notify_trigger_disabled():
                silent = bench.wrk(paths, "PATCH", data["key"], args.seconds, 2, 16, False, 0)
            baseline = bench.wrk(paths, "PATCH", data["key"], args.seconds, 2, 16, False, 0)
            base_rps = bench.requests_per_second(baseline)
            idle = database_connections()
            silent_rps = bench.requests_per_second(silent)
            silent_row = (f"{layout}, no NOTIFY trigger", 0, idle, None, None, silent_rps)
            rows.append((*silent_row, silent["p50_us"] / 1000, silent_rps / base_rps))
            rows.append((layout, 0, idle, None, None, base_rps, baseline["p50_us"] / 1000, 1.0))
            for listeners in args.listeners:
                chosen = paths[: min(len(paths), listeners)]
                result = asyncio.run(scenario(data, chosen, listeners, args.seconds))
                row = (layout, listeners, result["idle_connections"], result["p50_ms"], result["p99_ms"])
                rows.append((*row, result["rps"], result["patch_p50_ms"], result["rps"] / base_rps))
                print(f"  {layout}: {listeners} listeners: {result}", flush=True)
    # What the shared reads buy: the crowd on one run again, each stream reading for itself.
    unshared_rows = []
    with bench.serving(data, 5), uvicorn(args.workers, STREAM_PORT, {"STREAM_SHARED_READS": False}):
        baseline = bench.wrk(one_run, "PATCH", data["key"], args.seconds, 2, 16, False, 0)
        base_rps = bench.requests_per_second(baseline)
        for listeners in args.listeners:
            result = asyncio.run(scenario(data, one_run, listeners, args.seconds))
            row = ("one run, reads not shared", listeners, result["idle_connections"], result["p50_ms"])
            unshared_rows.append(
                (*row, result["p99_ms"], result["rps"], result["patch_p50_ms"], result["rps"] / base_rps)
            )
            print(f"  one run, reads not shared: {listeners} listeners: {result}", flush=True)
    rows += unshared_rows
    print(f"\nstreams: uvicorn, {args.workers} processes; PATCHes: gunicorn, 5 sync workers, wrk 2 x 16")
    print("| layout | listeners | DB connections (idle listeners) | frame after commit p50 | p99 |", end="")
    print(" PATCH req/s | PATCH p50 | vs no listener |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for layout, listeners, connections, p50, p99, rps, patch_p50, ratio in rows:
        latency = f"{p50:.1f} ms | {p99:.1f} ms" if p50 is not None else "— | —"
        cells = f"| {layout} | {listeners} | {connections} | {latency} | {rps:.0f} | {patch_p50:.1f} ms"
        print(f"{cells} | {ratio:.2f}× |")
    listeners = " ".join(str(n) for n in args.listeners)
    options = f"--listeners {listeners} --workers {args.workers} --seconds {args.seconds}"
    print(f"\nRerun: .venv/bin/python -m bench.stream {options}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
