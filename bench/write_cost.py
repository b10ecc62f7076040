"""What the change feed costs a write of a run: its trigger and its indexes (issue 18).

Usage (from the project root, after `make setup`; needs PostgreSQL at 127.0.0.1):

    .venv/bin/python -m bench.write_cost [--writes 3000] [--rounds 3]

On `bench.run`'s database (made anew: 10,200 runs), one client sends `--writes` single-row
`UPDATE … SET state = state || …, version = version + 1` statements to random runs of 200, with
`synchronous_commit = off` (so the WAL flush does not drown the difference), in three set-ups,
interleaved round by round: as migrated (the trigger and the feed's indexes), without the trigger,
and without the trigger and the four indexes migration 0010 added on `updated_at` and
`change_number`. It prints the client-observed time per statement, and restores the schema.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from . import run as bench

TRIGGER = "taskruns_run_change_number"
FEED_INDEXES = [
    "taskruns_run_task_updated",
    "taskruns_run_project_updated",
    "taskruns_run_task_change",
    "taskruns_run_project_change",
]
SETUPS = [
    ("as migrated: trigger and indexes", True, True),
    ("without the trigger", False, True),
    ("without the trigger and the four indexes", False, False),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = bench.set_up("on")
    import psycopg

    url = bench.DATABASE_URL.replace("postgres://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        table = "taskruns_taskrun"
        definitions = {
            name: conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name]).fetchone()[0]
            for name in FEED_INDEXES
        }
        results: dict[str, list[float]] = {name: [] for name, _, _ in SETUPS}
        try:
            for _ in range(args.rounds):
                for name, trigger, indexes in SETUPS:
                    conn.execute(
                        f"ALTER TABLE {table} {'ENABLE' if trigger else 'DISABLE'} TRIGGER {TRIGGER}"
                    )
                    for index, definition in definitions.items():
                        conn.execute(f"DROP INDEX IF EXISTS {index}")
                        if indexes:
                            conn.execute(definition)
                    conn.execute(f"VACUUM ANALYZE {table}")
                    writes(conn, data["runs"], 300)  # warm up
                    results[name].append(writes(conn, data["runs"], args.writes))
        finally:
            conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {TRIGGER}")
            for index, definition in definitions.items():
                conn.execute(f"DROP INDEX IF EXISTS {index}")
                conn.execute(definition)
    base = statistics.median(results[SETUPS[-1][0]])
    print("\n| set-up | µs per UPDATE (median) | rounds | vs without both |")
    print("|---|---|---|---|")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {', '.join(f'{v:.1f}' for v in values)} | {median / base:.2f}× |")
    print(f"\nRerun: .venv/bin/python -m bench.write_cost --writes {args.writes} --rounds {args.rounds}")
    return 0


def writes(conn, runs, count: int) -> float:
    """Microseconds per single-row UPDATE of a random run of ``runs``."""
    sql = (
        "UPDATE taskruns_taskrun SET state = state || %s::jsonb, version = version + 1, "
        "updated_at = now() WHERE id = %s"
    )
    started = time.perf_counter()
    for number in range(count):
        conn.execute(sql, [f'{{"k{number % 50}": {number}}}', random.choice(runs)])
    return (time.perf_counter() - started) / count * 1e6


if __name__ == "__main__":
    sys.exit(main())
