"""CPU per PATCH, in-process: the app's Python and its PostgreSQL backend, per target.

Usage (from the project root, after `make setup`; PostgreSQL on this machine at 127.0.0.1):

    .venv/bin/python -m bench.cpu [--requests 3000] [--rounds 3]

No HTTP server and no load generator: each target's PATCH (one random state key on one of 200
runs, as in the bench's spread scenario) is sent through Django's WSGI handler in this process,
and the CPU it took is read from this process (time.process_time) and from its PostgreSQL
backend (/proc/<pid>/stat, so the server must run on this machine). This is where a change to
per-request work shows before the load bench, without its noise from wrk, gunicorn and the
kernel; the targets are interleaved round by round.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import time

from .run import TARGETS, set_up

PATCH_TARGETS = ("taskruns", "posthog-style", "floor", "drf floor", "floor, key in UPDATE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="PATCHes per target and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the table shows the median")
    args = parser.parse_args()
    data = set_up(synchronous_commit="on")
    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    measured: dict[str, list[tuple[float, float]]] = {name: [] for name in PATCH_TARGETS}
    for round_ in range(args.rounds):
        for name in PATCH_TARGETS:
            paths = [TARGETS[name]["run"].format(run=run, **data) for run in data["runs"]]
            for number in range(200):  # warm: connection, imports, prepared statements
                patch(handler, random.choice(paths), data["key"], number)
            app, database = cpu_of(handler, paths, data["key"], args.requests)
            measured[name].append((app, database))
            print(f"  round {round_ + 1}: {name:22} app {app:.3f} ms  database {database:.3f} ms", flush=True)
    print_table(measured, args)
    return 0


def patch(handler, path: str, key: str, number: int) -> None:
    body = json.dumps({"state": {f"k{random.randint(1, 50)}": number}}).encode()
    environ = {
        "REQUEST_METHOD": "PATCH",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
    }
    statuses: list[str] = []
    content = b"".join(handler(environ, lambda status, headers: statuses.append(status)))
    if not statuses[0].startswith("200"):
        raise SystemExit(f"{path}: {statuses[0]} {content[:300]!r}")


def cpu_of(handler, paths: list[str], key: str, requests: int) -> tuple[float, float]:
    """Milliseconds of CPU per PATCH: this process's, and its database backend's."""
    return cpu_of_calls(lambda number: patch(handler, random.choice(paths), key, number), requests)


def cpu_of_calls(send, requests: int) -> tuple[float, float]:
    """Milliseconds of CPU per ``send(number)``: this process's, and its database backend's."""
    (pid, backend_before), app_before = backend_cpu(), time.process_time()
    for number in range(requests):
        send(number)
    app_after, (pid_after, backend_after) = time.process_time(), backend_cpu()
    if pid_after != pid:
        raise SystemExit("the database connection was closed between requests: set CONN_MAX_AGE")
    return 1000 * (app_after - app_before) / requests, 1000 * (backend_after - backend_before) / requests


def backend_cpu() -> tuple[int, float]:
    """This connection's PostgreSQL backend: its process id, and the seconds of CPU (user +
    system) it has used so far."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return pid, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_table(measured, args) -> None:
    def median_total(name):
        return statistics.median(app + database for app, database in measured[name])

    ours = median_total("taskruns")
    print()
    print("| target | app ms | database ms | total ms | its total ÷ taskruns' (≈ taskruns' req/s ÷ its) |")
    print("|---|---:|---:|---:|---:|")
    for name, rounds in measured.items():
        app = statistics.median(a for a, _ in rounds)
        database = statistics.median(d for _, d in rounds)
        total = median_total(name)
        print(f"| {name} | {app:.3f} | {database:.3f} | {total:.3f} | {total / ours:.2f}× |")
    print()
    print(f"Rerun: .venv/bin/python -m bench.cpu --requests {args.requests} --rounds {args.rounds}")
    print(f"(median of {args.rounds} rounds of {args.requests} PATCHes per target, in-process, one client)")


if __name__ == "__main__":
    sys.exit(main())
