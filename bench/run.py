"""Side-by-side benchmark of taskruns against its two baselines, on PostgreSQL under gunicorn.

Usage (from the project root, after `make setup`; needs PostgreSQL at 127.0.0.1 and `wrk`):

    .venv/bin/python -m bench.run [--seconds 10] [--workers 4]

It (re)creates the database `taskruns_bench`, migrates it, creates a project, a task with 200
runs and one "hot" run per target, starts gunicorn on 127.0.0.1, drives each scenario against
each target with wrk (a C load generator, light on the CPU the server needs), counts lost state
keys on the hot runs afterwards, and prints a table plus the command to rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/taskruns_bench")
PORT = 8765
WRITERS = 16
WARM_UP_SECONDS = 1
OTHER_TASKS, RUNS_PER_OTHER_TASK = 100, 100
# A fixed-work round that has not ended by then is cut short (wrk's duration).
WRITES_TIMEOUT_SECONDS = 300

TARGETS = {
    "taskruns": {
        "run": "/api/projects/{project}/tasks/{task}/runs/{run}/",
        "list": "/api/projects/{project}/tasks/{task}/runs/?limit=100",
    },
    "posthog-style": {
        "run": "/bench/posthog/runs/{run}/",
        "list": "/bench/posthog/tasks/{task}/runs/?limit=100",
    },
    "floor": {"run": "/bench/floor/runs/{run}/", "list": "/bench/floor/tasks/{task}/runs/"},
    "drf floor": {"run": "/bench/drf-floor/runs/{run}/"},
    "floor, key in UPDATE": {"run": "/bench/floor-key-in-update/runs/{run}/"},
    "naive (no lock)": {"run": "/bench/naive/runs/{run}/"},
}
# Targets measured in some scenarios only: what a PATCH without a lock loses, with 16 writers
# on one run; how the floor does with its key checked by its UPDATE, as taskruns' is.
ONLY_IN = {"naive (no lock)": {"one-run", "one-run-timed"}, "floor, key in UPDATE": {"spread"}}
# The targets whose row lock time is measured (bench/locks.py): the naive one takes none.
LOCK_TARGETS = ("taskruns", "posthog-style", "floor")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk run")
    parser.add_argument(
        "--writes",
        type=int,
        default=100,
        help="PATCHes per writer in the one-run scenario (the same work for every target)",
    )
    parser.add_argument("--workers", type=int, default=5, help="gunicorn sync workers (2 x cores + 1)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds per scenario; the table shows the median"
    )
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default="on",
        help="PostgreSQL's synchronous_commit for the bench database: 'off' takes the WAL flush out of "
        "each commit (and so out of the time a row stays locked); PostgreSQL's default is 'on'",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[scenario.option for scenario in SCENARIOS],
        help="run only this scenario (repeatable; default: all)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")

    data = set_up(args.synchronous_commit)

    with serving(data, args.workers):
        chosen = [scenario for scenario in SCENARIOS if not args.scenario or scenario.option in args.scenario]
        rows = run_scenarios(data, chosen, args)
    from .locks import lock_hold_times

    held = lock_hold_times(data, {name: TARGETS[name]["run"] for name in LOCK_TARGETS})
    print_table(rows, args)
    print_paired_ratios(rows)
    print_lock_table(held)
    return 0


def set_up(synchronous_commit: str) -> dict:
    """The bench's database made anew and migrated, Django set up on it as the server will be,
    and the bench's data created (see create_data)."""
    os.environ.update(
        DATABASE_URL=DATABASE_URL,
        DJANGO_SETTINGS_MODULE="bench.settings",
        DJANGO_DEBUG="0",
        DJANGO_CONN_MAX_AGE="600",
    )
    recreate_database(synchronous_commit)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
    import django

    django.setup()
    return create_data()


def requests_per_second(result: dict) -> float:
    return result["requests"] / result["duration_us"] * 1e6


def recreate_database(synchronous_commit: str) -> None:
    import psycopg

    name = DATABASE_URL.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = {synchronous_commit}')


def create_data() -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from taskruns.keys import issue_key
    from taskruns.models import Project, Task, TaskRun

    user = get_user_model().objects.create_user("bench")
    project = Project.objects.create(name="bench")
    project.members.add(user)
    task = Task.objects.create(project=project, title="bench")
    runs = TaskRun.objects.bulk_create(TaskRun(task=task, project=project) for _ in range(200))
    hot = {name: TaskRun.objects.create(task=task, project=project) for name in TARGETS}
    # The rest of a deployment's runs table, which the scenarios do not touch: with only the
    # bench task's runs the table is a few pages, PostgreSQL plans a run's lookup as a scan of
    # the whole table, and a prepared statement keeps that plan while the scenarios' updates
    # grow the table (a plain query is planned again each time).
    others = Task.objects.bulk_create(Task(project=project, title=f"other {i}") for i in range(OTHER_TASKS))
    TaskRun.objects.bulk_create(
        (TaskRun(task=other, project=project) for other in others for _ in range(RUNS_PER_OTHER_TASK)),
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {
        "project": project.pk,
        "task": task.pk,
        "runs": [run.pk for run in runs],
        "hot": {name: run.pk for name, run in hot.items()},
        "key": issue_key(user, "bench")[1],
    }


@contextmanager
def serving(data, workers: int) -> Iterator[None]:
    """The demo app and the baselines (bench.wsgi) under gunicorn on PORT, up until the block
    ends; ``workers`` sync workers."""
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "bench.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{PORT}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_up(data)
        yield
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def wait_until_up(data) -> None:
    url = f"http://127.0.0.1:{PORT}/bench/floor/runs/{data['runs'][0]}/"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {data['key']}"})
    for _ in range(100):
        try:
            urllib.request.urlopen(request, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start")


def wrk(
    paths: list[str],
    method: str,
    key: str,
    seconds: int,
    threads: int,
    connections: int,
    unique,
    round_,
    writes: int | None = None,
):
    """Run wrk; its RESULT line, plus ``acked``: the state keys of acknowledged PATCHes.

    For ``seconds``; or, with ``writes``, until each thread has had that many answers (wrk is
    interrupted then, and reports as at the end of its duration)."""
    with tempfile.TemporaryDirectory() as tmp:
        path_file, acked_file, done_file = (Path(tmp) / name for name in ("paths.txt", "acked.txt", "done"))
        path_file.write_text("\n".join(paths) + "\n")
        env = {
            **os.environ,
            "BENCH_PATHS": str(path_file),
            "BENCH_METHOD": method,
            "BENCH_KEY": key,
            "BENCH_UNIQUE": "1" if unique else "0",
            "BENCH_ROUND": str(round_),
            "BENCH_ACKED": str(acked_file),
            "BENCH_WRITES": str(writes or 0),
            "BENCH_DONE": str(done_file),
        }
        duration = seconds if writes is None else WRITES_TIMEOUT_SECONDS
        command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s"]
        command += ["--timeout", "10s", "-s", str(ROOT / "bench" / "load.lua"), f"http://127.0.0.1:{PORT}"]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        if writes is not None:
            _interrupt_when_done(process, done_file, threads)
        out = process.communicate()[0]
        if process.returncode:
            raise subprocess.CalledProcessError(process.returncode, command, out)
        acked = set(acked_file.read_text().split()) if unique else set()
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    return {**json.loads(line.removeprefix("RESULT ")), "acked": acked}


def _interrupt_when_done(process: subprocess.Popen, done_file: Path, threads: int) -> None:
    """SIGINT wrk (which then reports, as at the end of its duration) once each of its
    ``threads`` has written its line to ``done_file``."""
    while process.poll() is None:
        if done_file.exists() and len(done_file.read_text().splitlines()) >= threads:
            process.send_signal(signal.SIGINT)
            return
        time.sleep(0.01)


def settle() -> None:
    """Leave the database as the previous target's load left it no more: vacuum the runs (its
    dead row versions) and checkpoint (its dirty pages; each target then also starts on fresh
    full-page writes). Otherwise whichever target comes next pays for the last one's writes."""
    from django.db import connection

    from taskruns.models import TaskRun

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM {TaskRun._meta.db_table}")
        cursor.execute("CHECKPOINT")


class Scenario(NamedTuple):
    option: str  # its --scenario name
    name: str  # as the table shows it ({writes} and {seconds}: the options' values)
    method: str
    route: str  # "run": a random one of the 200 runs; "hot": the target's own run; "list"
    threads: int  # wrk threads over WRITERS connections
    unique: bool  # each PATCH adds a key of its own (lost updates are counted)
    fixed_work: bool  # each connection sends --writes requests, instead of sending for --seconds


SCENARIOS = [
    Scenario("spread", "PATCH spread over 200 runs", "PATCH", "run", 2, False, False),
    Scenario("one-run", "16 writers × {writes} PATCHes, one run", "PATCH", "hot", WRITERS, True, True),
    Scenario("one-run-timed", "16 writers for {seconds} s, one run", "PATCH", "hot", WRITERS, True, False),
    Scenario("get", "GET a run", "GET", "run", 2, False, False),
    Scenario("list", "GET a list page of 100", "GET", "list", 2, False, False),
]


def run_scenarios(data, scenarios, args) -> list[dict]:
    """Each scenario, ``args.rounds`` times, the targets interleaved within each round so that
    a slow spell of this shared machine hits them alike; a row per scenario and target holds
    the median round."""
    from taskruns.models import TaskRun

    def paths(target, route):
        template = TARGETS[target]["list" if route == "list" else "run"]
        runs = [data["hot"][target]] if route == "hot" else data["runs"]
        return [template.format(project=data["project"], task=data["task"], run=run) for run in runs]

    rows = []
    for option, name_template, method, route, threads, unique, fixed_work in scenarios:
        scenario = name_template.format(writes=args.writes, seconds=args.seconds)
        writes = args.writes if fixed_work else None
        targets = [
            name
            for name, routes in TARGETS.items()
            if option in ONLY_IN.get(name, {option}) and (route != "list" or "list" in routes)
        ]
        results: dict[str, list[dict]] = {name: [] for name in targets}
        for name in targets:
            # Warm up, unmeasured: each gunicorn worker opens its database connection and
            # imports what the route needs before the first measured round.
            wrk(paths(name, route), method, data["key"], WARM_UP_SECONDS, threads, WRITERS, False, 0)
        for round_ in range(args.rounds):
            for name in targets:
                if unique:
                    # Every target's run starts each round empty. (In a timed scenario a
                    # faster target still ends its round on a bigger state: see README.)
                    TaskRun.objects.filter(pk=data["hot"][name]).update(state={})
                settle()
                result = wrk(
                    paths(name, route),
                    method,
                    data["key"],
                    args.seconds,
                    threads,
                    WRITERS,
                    unique,
                    round_,
                    writes=writes,
                )
                if unique:
                    # A lost update: a PATCH answered 2xx whose key is not in the stored state.
                    stored = set(TaskRun.objects.get(pk=data["hot"][name]).state)
                    result["lost"] = len(result["acked"] - stored)
                del result["acked"]
                results[name].append(result)
                rps = requests_per_second(result)
                print(f"  round {round_ + 1}: {scenario:32} {name:16} {rps:8.0f} req/s", flush=True)
        for name, runs in results.items():
            median = sorted(runs, key=requests_per_second)[len(runs) // 2]
            lost = sum(r["lost"] for r in runs) if unique else None
            rows.append({**median, "scenario": scenario, "target": name, "lost": lost, "rounds": runs})
    return rows


def print_table(rows, args) -> None:
    print()
    columns = ["scenario", "target", "req/s", "p50 ms", "p99 ms", "errors", "lost updates"]
    print("| " + " | ".join([*columns, "req/s vs taskruns", "p99 vs taskruns"]) + " |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    ours = {row["scenario"]: row for row in rows if row["target"] == "taskruns"}
    for row in rows:
        rps = requests_per_second(row)
        base = ours[row["scenario"]]
        base_rps = requests_per_second(base)
        errors = row["bad_status"] + row["socket_errors"]
        lost = "" if row["lost"] is None else str(row["lost"])
        print(
            f"| {row['scenario']} | {row['target']} | {rps:.0f} | {row['p50_us'] / 1000:.1f} | "
            f"{row['p99_us'] / 1000:.1f} | {errors} | {lost} | {rps / base_rps:.2f}× | "
            f"{row['p99_us'] / max(base['p99_us'], 1):.2f}× |"
        )
    print()
    options = f"--seconds {args.seconds} --writes {args.writes} --workers {args.workers}"
    options += f" --rounds {args.rounds}"
    options += f" --synchronous-commit {args.synchronous_commit}"
    options += "".join(f" --scenario {name}" for name in args.scenario or ())
    print(f"Rerun: .venv/bin/python -m bench.run {options}")
    print(
        f"(median of {args.rounds} rounds per cell, each {args.seconds} s or {WRITERS} × {args.writes} "
        "PATCHes; lost updates summed over the rounds)"
    )
    print(
        f"({os.cpu_count()} cores, gunicorn {args.workers} sync workers, wrk 16 connections, local Postgres)"
    )


def print_paired_ratios(rows) -> None:
    """taskruns against each other target round by round: the rounds are interleaved, so a
    ratio within one round is not moved by a slow or fast spell of the shared machine."""

    print()
    print("taskruns ÷ each target, round by round (median of the rounds' ratios):")
    print()
    print("| scenario | target | req/s ratio per round | median | p99 ratio per round | median |")
    print("|---|---|---|---:|---|---:|")
    ours = {row["scenario"]: row["rounds"] for row in rows if row["target"] == "taskruns"}
    for row in rows:
        if row["target"] == "taskruns":
            continue
        pairs = list(zip(ours[row["scenario"]], row["rounds"], strict=True))
        throughput = [requests_per_second(mine) / requests_per_second(theirs) for mine, theirs in pairs]
        p99 = [mine["p99_us"] / max(theirs["p99_us"], 1) for mine, theirs in pairs]
        print(
            f"| {row['scenario']} | {row['target']} | {', '.join(f'{r:.2f}' for r in throughput)} | "
            f"{statistics.median(throughput):.2f}× | {', '.join(f'{r:.2f}' for r in p99)} | "
            f"{statistics.median(p99):.2f}× |"
        )


def print_lock_table(held: list[dict]) -> None:
    from .locks import STATE_KEYS, WRITES

    print()
    print(
        f"Row lock held per PATCH (one client, in-process, {WRITES} PATCHes on a run of {STATE_KEYS} keys):"
    )
    print()
    print("| target | p50 ms | p90 ms | most writes/s one run can take (1000 / p50) |")
    print("|---|---:|---:|---:|")
    for row in held:
        print(f"| {row['target']} | {row['p50']:.2f} | {row['p90']:.2f} | {1000 / row['p50']:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
