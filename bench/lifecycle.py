"""Heartbeats and the reaper on PostgreSQL, side by side with a floor (design §12).

Usage (from the project root, after `make setup`; needs PostgreSQL at 127.0.0.1 and `wrk`):

    .venv/bin/python -m bench.lifecycle [--seconds 5] [--rounds 3] [--runs 1000000] [--stale 10000]

1. Heartbeats per second under gunicorn (bench.run's database, server and wrk script): the app's
   `heartbeat` action and the floor's (a plain Django view: key lookup and one `UPDATE` of
   `last_heartbeat_at`), 16 connections on one run and spread over 200 runs, rounds interleaved.
2. The reaper: a runs table of `--runs` rows, of which `--stale` are in progress with a heartbeat
   timeout and silent past it (the rest finished, as most of a real table is), then `EXPLAIN` of
   the candidate query, the time to find the candidates (`reap(dry_run=True)`), the time of
   `reap()` (each run claimed with SKIP LOCKED, failed, its history written), and beside it the
   floor: one set-based `UPDATE … SET status = 'failed' WHERE <stale>` with no history, no
   signals and no per-run claim.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from datetime import timedelta

from . import run as bench

TARGETS = {
    "taskruns": "/api/projects/{project}/tasks/{task}/runs/{run}/heartbeat/",
    "floor": "/bench/floor/runs/{run}/heartbeat/",
}
SCENARIOS = [("heartbeat, 16 connections on one run", True), ("heartbeat spread over 200 runs", False)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds per scenario; the table shows the median"
    )
    parser.add_argument("--workers", type=int, default=5, help="gunicorn sync workers")
    parser.add_argument("--runs", type=int, default=1_000_000, help="rows in the reaper's runs table")
    parser.add_argument("--stale", type=int, default=10_000, help="stale runs among them")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    data = bench.set_up("on")
    from taskruns.models import TaskRun

    TaskRun.objects.update(status="in_progress")  # every bench run is one an executor heartbeats
    heartbeat_rows = heartbeats(data, args)
    reaper_rows = reaper_times(data, args)
    print_tables(heartbeat_rows, reaper_rows, args)
    return 0


def heartbeats(data, args) -> list[dict]:
    rows = []
    with bench.serving(data, args.workers):
        for scenario, one_run in SCENARIOS:
            runs = [data["hot"]["taskruns"]] if one_run else data["runs"]
            results: dict[str, list[dict]] = {name: [] for name in TARGETS}

            def paths(name, runs=runs):
                return [TARGETS[name].format(project=data["project"], task=data["task"], run=r) for r in runs]

            for name in TARGETS:
                bench.wrk(paths(name), "POST", data["key"], bench.WARM_UP_SECONDS, 2, bench.WRITERS, False, 0)
            for round_ in range(args.rounds):
                for name in TARGETS:
                    bench.settle()
                    result = bench.wrk(
                        paths(name), "POST", data["key"], args.seconds, 2, bench.WRITERS, False, 0
                    )
                    result["rps"] = bench.requests_per_second(result)
                    results[name].append(result)
                    print(
                        f"  round {round_ + 1}: {scenario:38} {name:9} {result['rps']:8.0f} req/s", flush=True
                    )
            for name, runs_of_target in results.items():
                median = sorted(runs_of_target, key=lambda r: r["rps"])[len(runs_of_target) // 2]
                rows.append(
                    {
                        "scenario": scenario,
                        "target": name,
                        **median,
                        "ratios": [],
                        "rounds": [r["rps"] for r in runs_of_target],
                    }
                )
    return rows


def fill_runs_table(data, total: int, stale: int, now) -> None:
    """``total`` runs of the bench task in all: ``stale`` in progress with a 60 s heartbeat
    timeout, silent for an hour; the rest completed. Inserted by PostgreSQL itself."""
    from django.db import connection

    from taskruns.models import TaskRun

    table = TaskRun._meta.db_table
    have = TaskRun.objects.count()
    TaskRun.objects.update(status="completed")
    with connection.cursor() as cursor:
        columns = (
            "id, task_id, project_id, status, environment, state, version, created_at, updated_at, "
            "status_changed_at, log_entry_count, heartbeat_timeout"
        )
        select = (
            "SELECT gen_random_uuid(), %s, %s, {status}, 'local', '{{}}'::jsonb, 1, %s, %s, %s, 0, {timeout} "
            "FROM generate_series(1, %s)"
        )
        past = now - timedelta(hours=1)
        cursor.execute(
            f"INSERT INTO {table} ({columns}) " + select.format(status="'completed'", timeout="NULL"),
            [data["task"], data["project"], past, past, past, max(total - have - stale, 0)],
        )
        cursor.execute(
            f"INSERT INTO {table} ({columns}) "
            + select.format(status="'in_progress'", timeout="interval '60 s'"),
            [data["task"], data["project"], past, past, past, stale],
        )
        cursor.execute(f"VACUUM ANALYZE {table}")


def reaper_times(data, args) -> list[dict]:
    from django.db import connection
    from django.utils import timezone

    from taskruns import rules
    from taskruns.models import TaskRun
    from taskruns.reaper import reap, stale_runs

    now = timezone.now()
    started = time.perf_counter()
    fill_runs_table(data, args.runs, args.stale, now)
    print(
        f"  filled the runs table ({TaskRun.objects.count()} runs) in {time.perf_counter() - started:.1f} s"
    )
    sql, params = stale_runs(now)[:500].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    print("EXPLAIN ANALYZE of one batch of candidates (500):\n" + plan)

    rows = []
    started = time.perf_counter()
    found = len(reap(now=now, dry_run=True).found)
    rows.append(
        {"what": "find the stale runs (reap --dry-run)", "runs": found, "s": time.perf_counter() - started}
    )
    started = time.perf_counter()
    result = reap(now=now)
    rows.append(
        {
            "what": "reap() (claim, fail, history, signals)",
            "runs": len(result.reaped),
            "s": time.perf_counter() - started,
        }
    )
    # The floor: the same runs back to stale, then one set-based UPDATE.
    TaskRun.objects.filter(error_code="heartbeat_timeout").update(
        status="in_progress", error_code=None, completed_at=None, status_changed_at=now - timedelta(hours=1)
    )
    sql, params = TaskRun.objects.filter(rules.stale(now)).values("pk").query.sql_with_params()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TaskRun._meta.db_table} SET status = 'failed', error_code = 'heartbeat_timeout' "
            f"WHERE id IN ({sql})",
            params,
        )
        floor_count = cursor.rowcount
    rows.append(
        {"what": "floor: one set-based UPDATE", "runs": floor_count, "s": time.perf_counter() - started}
    )
    return rows


def print_tables(heartbeat_rows, reaper_rows, args) -> None:
    print("\n| scenario | target | req/s (median) | p50 ms | p99 ms | errors | vs floor (paired rounds) |")
    print("|---|---|---|---|---|---|---|")
    floor = {row["scenario"]: row for row in heartbeat_rows if row["target"] == "floor"}
    for row in heartbeat_rows:
        base = floor[row["scenario"]]
        paired = [ours / theirs for ours, theirs in zip(row["rounds"], base["rounds"], strict=True)]
        errors = row["bad_status"] + row["socket_errors"]
        print(
            f"| {row['scenario']} | {row['target']} | {row['rps']:.0f} | {row['p50_us'] / 1000:.1f} | "
            f"{row['p99_us'] / 1000:.1f} | {errors} | {statistics.median(paired):.2f}× "
            f"({', '.join(f'{p:.2f}' for p in paired)}) |"
        )
    print(f"\nReaper, {args.stale} stale runs among {args.runs}:\n")
    print("| what | runs | seconds | runs/s |")
    print("|---|---|---|---|")
    for row in reaper_rows:
        print(f"| {row['what']} | {row['runs']} | {row['s']:.2f} | {row['runs'] / row['s']:.0f} |")
    print(
        "\nRerun: .venv/bin/python -m bench.lifecycle "
        f"--seconds {args.seconds} --rounds {args.rounds} --runs {args.runs} --stale {args.stale}"
    )


if __name__ == "__main__":
    sys.exit(main())
