"""The production topology side by side (issue 19): PostgreSQL reached directly or through
Debian's PgBouncer in transaction mode, with the app's prepared statements on or off.

Usage (from the project root, after `make setup`; needs PostgreSQL at 127.0.0.1, `wrk` and
Debian's `pgbouncer`):

    .venv/bin/python -m bench.topology [--repeats 3] [--seconds 5] [--scenario spread --scenario one-run]

It runs one round of `bench.run` (same database, data, gunicorn and wrk scenarios) per set-up,
the set-ups one after the other, in `--repeats` passes, and prints the app's and the floor's
medians, with each pass's ratio to the first set-up in the same pass (adjacent in time, so a slow
spell of this shared machine moves both less than it moves passes minutes apart). The floor
binds its statements on the client, so prepared statements change nothing for it: where its
numbers move between set-ups, that is the machine or the pooler. Prepared statements through
PgBouncer 1.18 in transaction mode are not a set-up: they fail (tests/test_pgbouncer.py shows how).
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    parser.add_argument("--repeats", type=int, default=3, help="passes over the set-ups, interleaved")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--scenario", action="append", default=None)
    args = parser.parse_args()
    scenarios = args.scenario or ["spread", "one-run"]
    # (scenario, target) -> set-up -> one [req/s, p50, p99, errors] per repeat
    rows: dict[tuple[str, str], dict[str, list[list[float]]]] = {}
    for repeat in range(args.repeats):
        for name, through_pgbouncer, threshold in SETUPS:
            print(f"== pass {repeat + 1}: {name}", flush=True)
            for line in run_once(through_pgbouncer, threshold, scenarios, args.seconds).splitlines():
                cells = [cell.strip() for cell in line.strip("|").split("|")]
                if len(cells) >= 6 and cells[1] in ("taskruns", "floor") and cells[2].isdigit():
                    numbers = [float(cell) for cell in cells[2:6]]
                    rows.setdefault((cells[0], cells[1]), {}).setdefault(name, []).append(numbers)
    print_table(rows, args.repeats)
    options = " ".join(f"--scenario {scenario}" for scenario in scenarios)
    print(
        "\nRerun: .venv/bin/python -m bench.topology "
        f"--repeats {args.repeats} --seconds {args.seconds} {options}"
    )
    return 0


def run_once(through_pgbouncer: bool, threshold: str, scenarios: list[str], seconds: int) -> str:
    """One round of ``bench.run`` in one set-up; its output."""
    bouncer = PgBouncer(5432) if through_pgbouncer else None
    env = {**os.environ, "DJANGO_DB_PREPARE_THRESHOLD": threshold}
    if bouncer is not None:
        bouncer.start()
        env["BENCH_DATABASE_URL"] = bouncer.url(bench.DATABASE_URL.rsplit("/", 1)[1])
    command = [sys.executable, "-m", "bench.run", "--rounds", "1", "--seconds", str(seconds)]
    command += [part for scenario in scenarios for part in ("--scenario", scenario)]
    try:
        run = subprocess.run(command, cwd=bench.ROOT, env=env, capture_output=True, text=True, check=True)
    finally:
        if bouncer is not None:
            bouncer.stop()
    return run.stdout


def print_table(rows: dict[tuple[str, str], dict[str, list[list[float]]]], repeats: int) -> None:
    """Medians per set-up, and each pass's req/s as a ratio to the first set-up's in that pass
    (the passes are minutes apart; the set-ups within one pass are adjacent)."""
    first = SETUPS[0][0]
    print(f"\nMedian of {repeats} passes; ratio: req/s against '{first}' in the same pass.\n")
    print("| scenario | target | set-up | req/s | p50 ms | p99 ms | errors | ratio per pass | median |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (scenario, target), by_setup in rows.items():
        for name, _, _ in SETUPS:
            passes = by_setup.get(name, [])
            if not passes:
                continue
            medians = [statistics.median(column) for column in zip(*passes, strict=True)]
            baseline = by_setup.get(first, [])
            ratios = [mine[0] / theirs[0] for mine, theirs in zip(passes, baseline, strict=False)]
            print(
                f"| {scenario} | {target} | {name} | {medians[0]:.0f} | {medians[1]:.1f} | "
                f"{medians[2]:.1f} | "
                f"{sum(p[3] for p in passes):.0f} | {', '.join(f'{r:.2f}' for r in ratios)} | "
                f"{statistics.median(ratios):.2f}× |"
            )


if __name__ == "__main__":
    sys.exit(main())
