"""What each of the app's remaining optimizations buys: CPU per request with it and without it,
with prepared statements on and off, in one process, interleaved.

Usage (from the project root, PostgreSQL on this machine at 127.0.0.1):

    .venv/bin/python -m bench.optimizations [--requests 2000] [--rounds 3]

Each optimization is switched off in-process by replacing the one piece that makes it (nothing
else changes), and each measurement is bench.cpu's: the Python of the request and its PostgreSQL
backend's CPU, per request, for a spread PATCH and a GET of a run. The rounds interleave every
variant, so that the machine's slow and fast spells fall on all of them alike. An optimization
stays only while this shows it pays; the table is in bench/README.md.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
from collections.abc import Callable
from contextlib import contextmanager

from .cpu import cpu_of_calls, patch
from .run import TARGETS, set_up


@contextmanager
def nothing_off():
    yield


@contextmanager
def without_reach_function():
    """The access scope as inline subqueries instead of migration 0005's PL/pgSQL function."""
    from taskruns import access

    original = access._reach_function_applies
    access._reach_function_applies = lambda policy, vendor: False
    try:
        yield
    finally:
        access._reach_function_applies = original


@contextmanager
def without_remembered_negotiation():
    """DRF's own content negotiation instead of taskruns.negotiation's remembered choice."""
    from rest_framework.negotiation import DefaultContentNegotiation

    from taskruns.views import ProjectScopedViewSet

    original = ProjectScopedViewSet.content_negotiation_class
    ProjectScopedViewSet.content_negotiation_class = DefaultContentNegotiation
    try:
        yield
    finally:
        ProjectScopedViewSet.content_negotiation_class = original


@contextmanager
def without_c_timestamp_loader():
    """Django's timestamp loader on the hot statements' cursors (taskruns.rows registers
    psycopg's C one only when the connection's zone is datetime.UTC itself)."""
    import zoneinfo

    from django.db import connection

    original = connection.__dict__.get("timezone")
    connection.__dict__["timezone"] = zoneinfo.ZoneInfo("UTC")
    try:
        yield
    finally:
        if original is None:
            connection.__dict__.pop("timezone", None)
        else:
            connection.__dict__["timezone"] = original


@contextmanager
def without_time_zone_cache():
    """A DateTimeField made for each response instead of one kept per time zone."""
    from taskruns import serializers

    original = serializers._datetime_field
    serializers._datetime_field = original.__wrapped__
    try:
        yield
    finally:
        serializers._datetime_field = original


def variants() -> dict[str, Callable]:
    return {
        "all on": nothing_off,
        "without the reach function": without_reach_function,
        "without remembered negotiation": without_remembered_negotiation,
        "without the C timestamp loader": without_c_timestamp_loader,
        "without the time-zone cache": without_time_zone_cache,
    }


def get(handler, path: str, key: str) -> None:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
    }
    statuses: list[str] = []
    b"".join(handler(environ, lambda status, headers: statuses.append(status)))
    if not statuses[0].startswith("200"):
        raise SystemExit(f"{path}: {statuses[0]}")


def set_prepared(on: bool) -> None:
    from django.db import connection

    # A new connection, so that no statement prepared under the other mode is left.
    connection.close()
    connection.ensure_connection()
    connection.connection.prepare_threshold = 5 if on else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the table shows the median")
    args = parser.parse_args()
    data = set_up(synchronous_commit="on")
    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    paths = [TARGETS["taskruns"]["run"].format(run=run, **data) for run in data["runs"]]
    kinds = {
        "PATCH": lambda number: patch(handler, random.choice(paths), data["key"], number),
        "GET": lambda number: get(handler, random.choice(paths), data["key"]),
    }
    measured: dict[tuple[str, str, str], list[float]] = {}
    for round_ in range(args.rounds):
        for prepared in (True, False):
            set_prepared(prepared)
            for number in range(300):  # a new backend: its catalog caches and plans
                for send in kinds.values():
                    send(number)
            # Each round starts the variants at another place, so that none is always first.
            names = list(variants())
            names = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in names:
                switch = variants()[name]
                with switch():
                    for kind, send in kinds.items():
                        for number in range(100):  # warm: plans, prepared statements
                            send(number)
                        ms = sum(cpu_of_calls(send, args.requests))
                        key = (name, "on" if prepared else "off", kind)
                        measured.setdefault(key, []).append(ms)
                        print(
                            f"  round {round_ + 1}: prepared {key[1]:3} {name:28} {kind:5} {ms:.3f} ms",
                            flush=True,
                        )
    print()
    print("| prepared statements | variant | PATCH ms | GET ms | PATCH vs all on | GET vs all on |")
    print("|---|---|---:|---:|---:|---:|")
    for prepared in ("on", "off"):
        base = {kind: statistics.median(measured[("all on", prepared, kind)]) for kind in kinds}
        for name in variants():
            cells = {kind: statistics.median(measured[(name, prepared, kind)]) for kind in kinds}
            ratios = " | ".join(f"{cells[kind] / base[kind]:.2f}×" for kind in kinds)
            print(f"| {prepared} | {name} | {cells['PATCH']:.3f} | {cells['GET']:.3f} | {ratios} |")
    print()
    print(f"Rerun: .venv/bin/python -m bench.optimizations --requests {args.requests} --rounds {args.rounds}")
    print(f"(CPU per request, app + PostgreSQL backend, median of {args.rounds} interleaved rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
