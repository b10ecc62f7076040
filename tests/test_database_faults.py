"""The database goes away, hangs, or holds a run's row lock during a stream of PATCHes — reached
directly, and through PgBouncer in transaction mode (which stays up while PostgreSQL stops).

The test starts its own PostgreSQL (Debian's binaries, a fresh data directory and port), serves
the demo app from it under gunicorn, and sends PATCHes that each add one unique state key while
it stops and restarts the server. While the database is down every request must fail fast with a
503 `database_unavailable` (no 500, no hang); once it is back the app recovers without a restart;
every PATCH answered 2xx is in the database, and no PATCH is partly applied (each applied PATCH
added exactly one key and one version).

Two more faults (issue 14): another session holds the run's row lock (every write to it answers
503 ``run_busy`` with Retry-After within ``LOCK_TIMEOUT``, while other requests are served), and
the server is frozen with SIGSTOP (its kernel still acknowledges packets, so no TCP timeout
fires; every request answers 503 within ``DATABASE_DEADLINE`` or the connect timeout). Each prints
what every request got and how long it took.
"""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest

from .live import ThrowawayPostgres, call, serve_demo
from .pgbouncer import PgBouncer

pytestmark = [pytest.mark.faults]

REQUEST_TIMEOUT = 10  # a request slower than this counts as a hang
FAST = 5.0  # while the database is down, answers must come within this many seconds


@pytest.fixture
def database():
    server = ThrowawayPostgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture(params=["direct", "through PgBouncer"])
def database_url(request, database):
    """The app's way to the database: direct, or through Debian's PgBouncer in transaction mode
    (which stays up while PostgreSQL stops), then without prepared statements."""
    if request.param == "direct":
        yield database.url, {}
        return
    bouncer = PgBouncer(database.port)
    bouncer.start()
    try:
        yield bouncer.url(), {"DJANGO_DB_PREPARE_THRESHOLD": "off"}
    finally:
        bouncer.stop()


#: Short limits, so that the frozen and locked cases answer quickly (defaults: 2 s and 10 s). The
#: deadline is longer than the lock limit, as by default: a lock wait ends as run_busy first.
LIMITS = {"LOCK_TIMEOUT": 1, "DATABASE_DEADLINE": 3}
#: A request to a frozen database slower than this counts as a hang (10x the deadline).
FROZEN_GUARD = 10 * LIMITS["DATABASE_DEADLINE"]


@pytest.fixture
def app(database, database_url):
    url, extra = database_url
    with serve_demo(url, {**extra, "TASKRUNS_OVERRIDES": json.dumps(LIMITS)}) as served:
        yield served


class Stream:
    """Sends PATCHes adding unique keys; records (key, status, code, seconds) for each."""

    def __init__(self, app) -> None:
        self.url = app["run_url"]
        self.key = app["api_key"]
        self.results: list[tuple[str, int, str | None, float]] = []
        self.count = 0

    def patch(self, timeout: float = REQUEST_TIMEOUT) -> tuple[str, int, str | None, float]:
        self.count += 1
        key = f"k{self.count}"
        answer = call("PATCH", self.url, self.key, {"state": {key: self.count}}, timeout=timeout)
        result = (key, answer.status, answer.code, answer.seconds)
        self.results.append(result)
        return result


def stored_state(database, run_id) -> tuple[dict, int]:
    with psycopg.connect(database.url.replace("postgres://", "postgresql://")) as conn:
        state, version = conn.execute(
            "SELECT state, version FROM taskruns_taskrun WHERE id = %s", [run_id]
        ).fetchone()
    return state, version


def assert_nothing_lost_or_half_written(database, app, results) -> None:
    state, version = stored_state(database, app["run_id"])
    acknowledged = {key for key, status, _c, _e in results if 200 <= status < 300}
    assert acknowledged <= set(state), sorted(acknowledged - set(state))[:10]
    # Each applied PATCH added one key and one version: nothing is half applied.
    assert version == 1 + len(state)


def tally(answers) -> str:
    """ "503 run_busy ×4 (0.98–1.03 s)": what the requests got, and how long they took."""
    groups: dict[tuple[int, str | None], list[float]] = {}
    for status, code, seconds in answers:
        groups.setdefault((status, code), []).append(seconds)
    return "; ".join(
        f"{status} {code or ''} ×{len(times)} ({min(times):.2f}–{max(times):.2f} s)".replace("  ", " ")
        for (status, code), times in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or ""))
    )


def retries_until_accepted(stream) -> int | None:
    """How many failed PATCHes come before the first 200 after a fault (at most 50, 0.2 s
    apart), or None if none is accepted."""
    for attempt in range(50):
        if stream.patch()[1] == 200:
            return attempt
        time.sleep(0.2)
    return None


def test_database_outage_gives_fast_503s_and_loses_or_half_writes_nothing(database, app):
    stream = Stream(app)
    for _ in range(30):
        assert stream.patch()[1] == 200

    # Stop the database while a background writer is mid-stream.
    stop_writer = threading.Event()
    background = Stream(app)
    background.count = 100_000  # its own keys

    def write_until_stopped():
        while not stop_writer.is_set():
            background.patch()

    writer = threading.Thread(target=write_until_stopped)
    writer.start()
    time.sleep(0.5)
    database.stop()
    down = [stream.patch() for _ in range(20)]
    database.start()
    recovered_after = retries_until_accepted(stream)
    after = [stream.patch() for _ in range(30)]
    stop_writer.set()
    writer.join(timeout=60)

    everything = stream.results + background.results
    statuses = {status for _key, status, _code, _elapsed in everything}
    assert 500 not in statuses and not any(500 <= s < 600 and s != 503 for s in statuses), statuses
    assert all(status == 503 and code == "database_unavailable" for _k, status, code, _e in down), down
    assert all(elapsed < FAST for _k, _s, _c, elapsed in down), [round(e, 2) for *_, e in down]
    assert max(elapsed for *_, elapsed in everything) < REQUEST_TIMEOUT
    assert recovered_after is not None, "the app did not recover without a restart"
    assert all(status == 200 for _k, status, _c, _e in after)

    assert_nothing_lost_or_half_written(database, app, everything)
    state, _version = stored_state(database, app["run_id"])
    acknowledged = {key for key, status, _c, _e in everything if 200 <= status < 300}
    failed = {key for key, status, _c, _e in everything if not 200 <= status < 300}
    print(
        f"\nfault test: {len(everything)} PATCHes; {len(acknowledged)} answered 2xx, all stored; "
        f"{len(failed)} failed ({sorted(statuses)}), of which {len(failed & set(state))} had committed "
        f"before the connection dropped; {len(down)} sent while down, all 503 in "
        f"{max(e for *_, e in down):.2f}s at most; recovered after {recovered_after} retries"
    )


def test_a_held_row_lock_gives_503_run_busy_within_the_limit_while_others_are_served(database, app):
    """Another session holds the run's row (as a stuck migration, a long admin transaction or a
    hostile direct connection might). Each write to the run — the one-statement PATCH, and the
    transactional set_output and cancel — gives up after LOCK_TIMEOUT with 503 ``run_busy`` and
    Retry-After; reads of the run and other requests are answered meanwhile; nothing is written."""
    stream = Stream(app)
    for _ in range(5):
        assert stream.patch()[1] == 200
    before = stored_state(database, app["run_id"])
    holder = psycopg.connect(database.url.replace("postgres://", "postgresql://"))
    holder.execute("SELECT 1 FROM taskruns_taskrun WHERE id = %s FOR UPDATE", [app["run_id"]])
    writes: list[tuple[int, str | None, float]] = []
    retry_after: set[str | None] = set()

    def write(kind: str) -> None:
        if kind == "patch":
            answer = call("PATCH", app["run_url"], app["api_key"], {"state": {"locked": 1}})
        elif kind == "set_output":
            answer = call("PATCH", app["run_url"] + "set_output/", app["api_key"], {"output": {"a": 1}})
        else:
            answer = call("POST", app["run_url"] + "cancel/", app["api_key"], {})
        writes.append((answer.status, answer.code, answer.seconds))
        retry_after.add(answer.headers.get("Retry-After"))

    try:
        threads = [
            threading.Thread(target=write, args=(kind,)) for kind in ["patch"] * 3 + ["set_output", "cancel"]
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        reads = [call("GET", app["run_url"], app["api_key"]) for _ in range(3)]
        listing = call("GET", f"{app['base']}/api/projects/{app['project_id']}/tasks/", app["api_key"])
        for thread in threads:
            thread.join(timeout=60)
        assert stored_state(database, app["run_id"]) == before  # nothing written under the lock
    finally:
        holder.rollback()
        holder.close()

    assert all((status, code) == (503, "run_busy") for status, code, _s in writes), writes
    assert retry_after == {"1"}
    assert all(seconds < REQUEST_TIMEOUT for *_, seconds in writes)  # a hang guard, 10x the limit
    assert all(read.status == 200 for read in [*reads, listing])
    assert stream.patch()[1] == 200  # the lock is gone: writes go through again
    assert_nothing_lost_or_half_written(database, app, stream.results)
    print(
        f"\nheld row lock (LOCK_TIMEOUT {LIMITS['LOCK_TIMEOUT']} s): writes {tally(writes)}; "
        f"reads meanwhile {tally([(a.status, a.code, a.seconds) for a in [*reads, listing]])}"
    )


def test_a_frozen_database_gives_503s_within_the_deadline_and_recovers(database, app):
    """SIGSTOP on every server process: connections stay open and packets are acknowledged, so
    only the app's own deadline (and libpq's connect_timeout for new connections) ends the wait.
    Each request answers 503 ``database_unavailable``; after SIGCONT the app recovers on its own."""
    stream = Stream(app)
    for _ in range(10):
        assert stream.patch()[1] == 200
    database.freeze()
    try:
        frozen = [stream.patch(timeout=FROZEN_GUARD) for _ in range(6)]
        frozen_reads = [call("GET", app["run_url"], app["api_key"], timeout=FROZEN_GUARD) for _ in range(3)]
    finally:
        database.thaw()
    recovered_after = retries_until_accepted(stream)
    answers = [(status, code, seconds) for _k, status, code, seconds in frozen]
    answers += [(read.status, read.code, read.seconds) for read in frozen_reads]
    assert all((status, code) == (503, "database_unavailable") for status, code, _s in answers), answers
    # A hang guard: 10x the deadline; the connect timeout (3 s) bounds a new connection.
    assert all(seconds < FROZEN_GUARD for *_, seconds in answers)
    assert recovered_after is not None, "the app did not recover without a restart"
    assert_nothing_lost_or_half_written(database, app, stream.results)
    print(
        f"\nfrozen database (DATABASE_DEADLINE {LIMITS['DATABASE_DEADLINE']} s, connect_timeout 3 s): "
        f"{tally(answers)}; recovered after {recovered_after} retries"
    )
