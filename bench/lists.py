"""Run lists, filters, cursor pages and the change feed on PostgreSQL at two table sizes.

Usage (from the project root, after `make setup`; needs PostgreSQL at 127.0.0.1 and `wrk`):

    .venv/bin/python -m bench.lists [--sizes 10000 1000000] [--seconds 3]

For each size it grows the bench task's runs to that many (PostgreSQL inserts them, in
transactions of 10,000, with mixed statuses and times), analyzes, and drives each page below
with wrk (2 threads, 8 connections) against gunicorn, printing p50/p99 and requests per second
side by side with the unfiltered first page. Last, at the largest size, `EXPLAIN (ANALYZE,
BUFFERS)` of each page's query, to show which index serves it. "Deep" pages start half-way
through the table: a cursor page's cost should not depend on where it starts, an offset page's
does (offsets stop at TASKRUNS["LIST_COUNT_LIMIT"], 10,000 by default).
"""

from __future__ import annotations

import argparse
import base64
import shutil
import sys
import time
from datetime import timedelta
from urllib.parse import urlencode

from . import run as bench

BATCH = 10_000
CONNECTIONS = 8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--seconds", type=int, default=3, help="duration of each wrk run")
    parser.add_argument("--workers", type=int, default=5)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    data = bench.set_up("on")
    tables = []
    with bench.serving(data, args.workers):
        for size in sorted(args.sizes):
            started = time.perf_counter()
            grow(data, size)
            print(f"  {size} runs in the task ({time.perf_counter() - started:.1f} s to fill)", flush=True)
            pages = page_urls(data)
            rows = []
            for name, url in pages.items():
                bench.wrk([url], "GET", data["key"], 1, 2, CONNECTIONS, False, 0)  # warm up
                result = bench.wrk([url], "GET", data["key"], args.seconds, 2, CONNECTIONS, False, 0)
                result["rps"] = bench.requests_per_second(result)
                rows.append({"page": name, **result})
                print(
                    f"    {name:48} {result['rps']:7.0f} req/s  p50 {result['p50_us'] / 1000:6.1f} ms",
                    flush=True,
                )
            tables.append((size, rows))
        explain(page_urls(data), data)
    for size, rows in tables:
        print_table(size, rows)
    print(
        "\nRerun: .venv/bin/python -m bench.lists "
        f"--sizes {' '.join(map(str, args.sizes))} --seconds {args.seconds}"
    )
    return 0


def grow(data, size: int) -> None:
    """The bench task's runs, grown to ``size``: statuses spread over all six, creation times
    one second apart, in transactions of BATCH rows (each its own change number)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from taskruns.models import TaskRun

    have = TaskRun.objects.filter(task_id=data["task"]).count()
    start = timezone.now() - timedelta(days=30)
    table = TaskRun._meta.db_table
    columns = (
        "id, task_id, project_id, status, environment, state, version, created_at, updated_at, "
        "status_changed_at, log_entry_count"
    )
    statuses = "(ARRAY['not_started','queued','in_progress','completed','failed','cancelled'])[1 + n %% 6]"
    while have < size:
        count = min(BATCH, size - have)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT gen_random_uuid(), %s, %s, {statuses}, "
                "CASE WHEN n %% 5 = 0 THEN 'cloud' ELSE 'local' END, '{}'::jsonb, 1, "
                "%s + n * interval '1 second', %s + n * interval '1 second', %s, 0 "
                "FROM generate_series(%s, %s) AS n",
                [data["task"], data["project"], start, start, start, have, have + count - 1],
            )
        have += count
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {table}")


def page_urls(data) -> dict[str, str]:
    """The pages measured, by name: each a path with its query."""
    from taskruns.models import TaskRun

    runs = f"/api/projects/{data['project']}/tasks/{data['task']}/runs/"
    project = f"/api/projects/{data['project']}/runs/"
    task_runs = TaskRun.objects.filter(task_id=data["task"])
    middle = task_runs.order_by("-created_at", "-id")[task_runs.count() // 2]
    deep_cursor = base64.b64encode(urlencode({"p": str(middle.created_at)}).encode()).decode()
    changed = task_runs.order_by("change_number", "id").values_list("change_number", "id")
    number, run_id = changed[task_runs.count() // 2]
    filtered = "status=in_progress,completed&environment=local"
    return {
        "unfiltered, first limit/offset page": f"{runs}?limit=100",
        "unfiltered, offset 9,900": f"{runs}?limit=100&offset=9900",
        "unfiltered, first cursor page": f"{runs}?cursor=&limit=100",
        "unfiltered, cursor page half-way": f"{runs}?limit=100&{urlencode({'cursor': deep_cursor})}",
        "filtered, first limit/offset page": f"{runs}?limit=100&{filtered}",
        "filtered, first cursor page": f"{runs}?cursor=&limit=100&{filtered}",
        "filtered, cursor page half-way": f"{runs}?limit=100&{filtered}&{urlencode({'cursor': deep_cursor})}",
        "project-wide, filtered cursor page": f"{project}?cursor=&limit=100&{filtered}",
        "feed page from the beginning": f"{project}?changes_after=0&limit=100",
        "feed page half-way": f"{project}?changes_after={number}.{run_id}&limit=100",
    }


def explain(pages: dict[str, str], data) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the query that reads each page's runs."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from taskruns.models import TaskRun

    client = Client(HTTP_AUTHORIZATION=f"Bearer {data['key']}")
    table = TaskRun._meta.db_table
    for name, url in pages.items():
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200, url
        page_sql = [
            q["sql"]
            for q in captured.captured_queries
            if q["sql"] and f'FROM "{table}"' in q["sql"] and "COUNT" not in q["sql"]
        ]
        if not page_sql:  # an offset past the count: answered without reading a page
            print(f"\n-- {name}: {url}: no page query")
            continue
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {page_sql[-1]}")
            plan = [row[0] for row in cursor.fetchall()]
        print(f"\n-- {name}: {url}")
        print("\n".join(line for line in plan if "Planning" not in line or "Time" in line))


def print_table(size: int, rows: list[dict]) -> None:
    print(
        f"\n{size:,} runs in the task "
        f"({size + bench.OTHER_TASKS * bench.RUNS_PER_OTHER_TASK:,} in the project):\n"
    )
    print("| page | req/s | p50 ms | p99 ms | p50 vs the first unfiltered page | errors |")
    print("|---|---|---|---|---|---|")
    base = rows[0]["p50_us"]
    for row in rows:
        errors = row["bad_status"] + row["socket_errors"]
        print(
            f"| {row['page']} | {row['rps']:.0f} | {row['p50_us'] / 1000:.1f} | {row['p99_us'] / 1000:.1f} | "
            f"{row['p50_us'] / base:.2f}× | {errors} |"
        )


if __name__ == "__main__":
    sys.exit(main())
