"""What issue 14's safety costs a PATCH: request-rate throttles and bounded waits, in-process.

Usage (from the project root, after `make setup`; PostgreSQL on this machine at 127.0.0.1):

    .venv/bin/python -m bench.safety [--requests 1000] [--rounds 3]

The taskruns PATCH of bench.cpu (one random state key on one of 200 runs, through Django's WSGI
handler in this process, one client), under four set-ups, interleaved round by round:

- **none**: no throttles, no lock limit, no database deadline (the baseline);
- **wait limits**: the lock limit set inside the statement, and the per-request deadline;
- **+ throttles, file cache**: the defaults, as the demo runs them (rates counted per key and per
  user in a file cache every process on the machine shares);
- **+ throttles, memory cache**: the same in a per-process memory cache, to show what the shared
  cache's disk round trips cost (not a deployment choice: it does not throttle several processes).

Each round sends fewer PATCHes than the default per-key rate (1,200 a minute) and empties the cache
first, so no request is refused; DRF's sliding window keeps one timestamp per request in the
window, so a round's average cost is that of a window half full. Prints µs per PATCH (wall clock,
this process and the database together) and each set-up's ratio to the baseline.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time

from .cpu import patch
from .run import TARGETS, set_up

NO_THROTTLES = {"api_key": None, "user": None, "failed_authentication": None}
SETUPS = {
    "none": ({"THROTTLE_RATES": NO_THROTTLES, "LOCK_TIMEOUT": None, "DATABASE_DEADLINE": None}, "file"),
    "wait limits": ({"THROTTLE_RATES": NO_THROTTLES}, "file"),
    "+ throttles, file cache": ({}, "file"),
    "+ throttles, memory cache": ({}, "memory"),
}


def caches(kind: str) -> dict:
    if kind == "memory":
        return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": tempfile.mkdtemp(prefix="taskruns-bench-cache-"),
        }
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="PATCHes per set-up and round (< 1200)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = set_up(synchronous_commit="off")
    from django.conf import settings
    from django.core.cache import caches as django_caches
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    handler = WSGIHandler()
    paths = [TARGETS["taskruns"]["run"].format(run=run, **data) for run in data["runs"]]
    measured: dict[str, list[float]] = {name: [] for name in SETUPS}
    for round_ in range(args.rounds):
        for name, (overrides, cache_kind) in SETUPS.items():
            with override_settings(TASKRUNS={**settings.TASKRUNS, **overrides}, CACHES=caches(cache_kind)):
                django_caches["default"].clear()
                for number in range(100):  # warm: connection, imports, prepared statements
                    patch(handler, random.choice(paths), data["key"], number)
                django_caches["default"].clear()
                started = time.perf_counter()
                for number in range(args.requests):
                    patch(handler, random.choice(paths), data["key"], number)
                per_patch = (time.perf_counter() - started) / args.requests * 1e6
            measured[name].append(per_patch)
            print(f"  round {round_ + 1}: {name:28} {per_patch:7.1f} µs per PATCH", flush=True)
    base = statistics.median(measured["none"])
    print("\n| set-up | µs per PATCH (median) | rounds | vs none |")
    print("|---|---:|---|---:|")
    for name, values in measured.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{value:.0f}" for value in values)
        print(f"| {name} | {median:.0f} | {rounds} | {median / base:.2f}× |")
    print(f"\nRerun: .venv/bin/python -m bench.safety --requests {args.requests} --rounds {args.rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
