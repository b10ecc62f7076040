"""The production topology side by side (issue 19): PostgreSQL reached directly or through
Debian's PgBouncer in transaction mode, with the app's prepared statements on or off.

Usage (from the project root, after `make setup`; needs PostgreSQL at 127.0.0.1, `wrk` and
Debian's `pgbouncer`):

    .venv/bin/python -m bench.topology [--rounds 2] [--seconds 5] [--scenario spread --scenario one-run]

It runs `bench.run` (same database, data, gunicorn and wrk scenarios) once per set-up, one after
the other, and prints the app's and the floor's numbers from each, with the app's ratio to the
floor within each set-up (the floor pays the same pooler, so that ratio is what the set-up does
to the app's own statements). Prepared statements through PgBouncer 1.18 in transaction mode are
not a set-up: they fail (tests/test_pgbouncer.py shows how).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from tests.pgbouncer import PgBouncer

from . import run as bench

SETUPS = [
    ("direct, prepared statements on", False, "5"),
    ("direct, prepared statements off", False, "off"),
    ("PgBouncer (transaction mode), prepared statements off", True, "off"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--scenario", action="append", default=None)
    args = parser.parse_args()
    scenarios = args.scenario or ["spread", "one-run"]
    rows: dict[tuple[str, str], dict[str, list[str]]] = {}
    for name, through_pgbouncer, threshold in SETUPS:
        bouncer = PgBouncer(5432) if through_pgbouncer else None
        env = {**os.environ, "DJANGO_DB_PREPARE_THRESHOLD": threshold}
        if bouncer is not None:
            bouncer.start()
            env["BENCH_DATABASE_URL"] = bouncer.url(bench.DATABASE_URL.rsplit("/", 1)[1])
        command = [
            sys.executable,
            "-m",
            "bench.run",
            "--rounds",
            str(args.rounds),
            "--seconds",
            str(args.seconds),
        ]
        command += [part for scenario in scenarios for part in ("--scenario", scenario)]
        print(f"== {name}", flush=True)
        try:
            output = subprocess.run(
                command, cwd=bench.ROOT, env=env, capture_output=True, text=True, check=True
            ).stdout
        finally:
            if bouncer is not None:
                bouncer.stop()
        for line in output.splitlines():
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if len(cells) >= 6 and cells[1] in ("taskruns", "floor") and cells[2].replace(".", "").isdigit():
                rows.setdefault((cells[0], cells[1]), {})[name] = cells[2:6]
    print("\n| scenario | target | set-up | req/s | p50 ms | p99 ms | errors | taskruns / floor |")
    print("|---|---|---|---|---|---|---|---|")
    for (scenario, target), by_setup in rows.items():
        for name, _, _ in SETUPS:
            if name not in by_setup:
                continue
            rps, p50, p99, errors = by_setup[name]
            floor = rows.get((scenario, "floor"), {}).get(name)
            ratio = f"{float(rps) / float(floor[0]):.2f}×" if target == "taskruns" and floor else ""
            print(f"| {scenario} | {target} | {name} | {rps} | {p50} | {p99} | {errors} | {ratio} |")
    options = " ".join(f"--scenario {scenario}" for scenario in scenarios)
    print(
        "\nRerun: .venv/bin/python -m bench.topology "
        f"--rounds {args.rounds} --seconds {args.seconds} {options}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
