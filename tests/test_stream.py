"""The live run stream (design §13, issue 17) against a live ASGI server (uvicorn, two worker
processes), on PostgreSQL (notifications) and on SQLite (polling).

The server runs with a short rotation (``STREAM_MAX_SECONDS``) and keepalive, so that rotation is
part of every long read here: the exactly-once test reconnects both when it chooses to and when
the server rotates the connection."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from .live import call, serve_demo

#: A read that waits longer than this counts as a hang (a guard, not a benchmark).
GUARD = 30
SETTINGS = {"STREAM_MAX_SECONDS": 3, "STREAM_KEEPALIVE_SECONDS": 1, "STREAM_POLL_SECONDS": 1}
#: On PostgreSQL the streams never poll: a change can only arrive through a notification, so the
#: tests there prove that notifications work (before the rotation at 3 s ends the connection).
POSTGRES_SETTINGS = {**SETTINGS, "STREAM_POLL_SECONDS": 600}
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module", params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def app(request):
    # No persistent connections under ASGI (Django's advice): each request's own connection closes
    # with it, so what stays open is the streams' listener and readers, which the tests count.
    overrides = {"TASKRUNS_OVERRIDES": json.dumps(SETTINGS), "DJANGO_CONN_MAX_AGE": "0"}
    if request.param == "sqlite":
        database = Path(tempfile.mkdtemp(prefix="taskruns-stream-")) / "db.sqlite3"
        with serve_demo(f"sqlite:///{database}", overrides, server="uvicorn") as served:
            yield {**served, "vendor": "sqlite", "database": database}
        return
    overrides = {**overrides, "TASKRUNS_OVERRIDES": json.dumps(POSTGRES_SETTINGS)}
    name = f"taskruns_stream_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgres://postgres@127.0.0.1:5432/{name}"
        with serve_demo(url, overrides, server="uvicorn") as served:
            yield {**served, "vendor": "postgresql", "url": url.replace("postgres://", "postgresql://")}
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Listener:
    """An SSE client over http.client: frames as (event, id, data)."""

    def __init__(self, url: str, key: str | None, last_event_id: str | None = None) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=GUARD)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.conn.request(
            "GET", f"{parts.path}?{parts.query}" if parts.query else parts.path, headers=headers
        )
        self.response = self.conn.getresponse()
        self.status = self.response.status

    def frames(self):
        event, event_id, data = None, None, None
        while True:
            line = self.response.readline()
            if not line:
                return
            line = line.decode().rstrip("\n")
            if not line:
                if event is not None:
                    yield event, event_id, json.loads(data) if data else None
                event, event_id, data = None, None, None
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data = line[6:]

    def close(self) -> None:
        self.conn.close()


def new_run(app) -> str:
    runs = f"{app['base']}/api/projects/{app['project_id']}/tasks/{app['task_id']}/runs/"
    created = call("POST", runs, app["api_key"], {})
    assert created.status == 201, created.body
    return f"{runs}{json.loads(created.body)['id']}/"


def append(app, run_url: str, *entries) -> None:
    answer = call("POST", f"{run_url}append_log/", app["api_key"], {"entries": list(entries)})
    assert answer.status == 200, answer.body


def patch(app, run_url: str, body: dict) -> dict:
    answer = call("PATCH", run_url, app["api_key"], body)
    assert answer.status == 200, answer.body
    return json.loads(answer.body)


def test_the_stream_starts_with_the_runs_state_and_brings_patches_and_log_entries(app):
    run_url = new_run(app)
    append(app, run_url, {"n": 0})
    listener = Listener(f"{run_url}stream/", app["api_key"])
    assert listener.status == 200
    assert listener.response.getheader("Content-Type") == "text/event-stream"
    frames = listener.frames()
    event, event_id, data = next(frames)
    assert event == "state" and data["version"] == 1 and data["status"] == "queued"
    assert data["run_id"] == run_url.rstrip("/").rsplit("/", 1)[1]
    event, log_id, data = next(frames)
    assert (event, data) == ("log", {"n": 0})
    patch(app, run_url, {"stage": "coding", "state": {"k": 1}})
    append(app, run_url, {"n": 1}, {"n": 2})
    seen = []
    for event, _event_id, data in frames:
        if event != "keepalive":
            seen.append((event, data.get("version") if event == "state" else data))
        if ("log", {"n": 2}) in seen:
            break
    listener.close()
    assert seen == [("state", 2), ("log", {"n": 1}), ("log", {"n": 2})]


def test_every_entry_after_the_last_event_id_arrives_exactly_once_across_reconnects(app):
    """A writer appends entries and PATCHes while a reader disconnects after k frames (k
    random), reconnects with Last-Event-ID, and so on (the server also rotates every few
    seconds). Every entry arrives exactly once, in order; the versions seen strictly increase and
    end at the stored one."""
    run_url = new_run(app)
    total = 120
    done = threading.Event()

    def write() -> None:
        for n in range(total):
            append(app, run_url, {"n": n})
            if n % 3 == 0:
                patch(app, run_url, {"state": {"at": n}})
            time.sleep(0.01)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    received: list[int] = []
    versions: list[int] = []
    last_id = None
    rng = random.Random(17)
    reconnects = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        listener = Listener(f"{run_url}stream/", app["api_key"], last_id)
        assert listener.status == 200, listener.status
        budget = rng.randint(1, 12)
        for event, event_id, data in listener.frames():
            if event == "log":
                received.append(data["n"])
            elif event == "state":
                versions.append(data["version"])
            if event_id is not None:
                last_id = event_id
                budget -= 1
            if budget == 0:
                break
        listener.close()
        reconnects += 1
        if done.is_set() and len(received) >= total:
            stored_version = json.loads(call("GET", run_url, app["api_key"]).body)["version"]
            if versions and versions[-1] == stored_version:
                break
    writer.join()
    assert received == list(range(total)), (len(received), received[:20])
    assert all(a < b for a, b in zip(versions, versions[1:], strict=False)), versions
    assert versions[-1] == json.loads(call("GET", run_url, app["api_key"]).body)["version"]
    assert reconnects > 5


def test_a_rotated_connection_says_so_and_keepalives_fill_the_silence(app):
    run_url = new_run(app)
    listener = Listener(f"{run_url}stream/", app["api_key"])
    started = time.monotonic()
    events = [event for event, _id, _data in listener.frames()]
    listener.close()
    assert events[0] == "state" and "keepalive" in events
    assert events[-1] == "end"
    assert time.monotonic() - started < GUARD


def test_a_finished_run_ends_the_stream_and_a_reconnect_gets_204(app):
    run_url = new_run(app)
    listener = Listener(f"{run_url}stream/", app["api_key"])
    frames = listener.frames()
    assert next(frames)[0] == "state"
    patch(app, run_url, {"status": "in_progress"})
    append(app, run_url, {"last": True})
    patch(app, run_url, {"status": "completed"})
    rest = list(frames)
    listener.close()
    assert rest[-1][0] == "stream-end" and rest[-1][2] == {"status": "completed"}
    states = [data for event, _id, data in rest if event == "state"]
    assert states[-1]["status"] == "completed"
    again = Listener(f"{run_url}stream/", app["api_key"], rest[-1][1])
    assert again.status == 204
    again.close()


def test_start_latest_skips_the_existing_log(app):
    run_url = new_run(app)
    append(app, run_url, {"old": 1}, {"old": 2})
    listener = Listener(f"{run_url}stream/?start=latest", app["api_key"])
    frames = listener.frames()
    assert next(frames)[0] == "state"
    append(app, run_url, {"new": 1})
    event, _id, data = next(frame for frame in frames if frame[0] != "keepalive")
    listener.close()
    assert (event, data) == ("log", {"new": 1})


def test_the_stream_is_scoped_and_authenticated_like_a_get(app):
    run_url = new_run(app)
    assert Listener(f"{run_url}stream/", None).status == 401
    other = run_url.replace(run_url.rstrip("/").rsplit("/", 1)[1], str(uuid.uuid4()))
    listener = Listener(f"{other}stream/", app["api_key"])
    assert listener.status == 404
    assert json.loads(listener.response.read())["errors"][0]["code"] == "not_found"
    listener = Listener(f"{run_url}stream/", app["api_key"], "not-an-id")
    assert listener.status == 400


def test_bodies_are_limited_under_the_asgi_server_before_django_reads_them(app):
    """uvicorn hands Django the whole body; taskruns.asgi.BodyLimit refuses it first."""
    run_url = new_run(app)
    before = json.loads(call("GET", run_url, app["api_key"]).body)["version"]
    parts = urlsplit(run_url)
    headers = {"Authorization": f"Bearer {app['api_key']}", "Content-Type": "application/json"}
    for body, chunked, expected in [
        (b'{"state": {"a": "' + b"x" * (3 * 1024 * 1024) + b'"}}', False, (413, "request_too_large")),
        ((b"x" * 65536 for _ in range(64)), True, (413, "request_too_large")),
        (iter([b'{"state": {"small": 1}}']), True, (411, "length_required")),
    ]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=GUARD)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request("PATCH", parts.path, body=body, headers=headers, encode_chunked=chunked)
        response = conn.getresponse()
        answer = json.loads(response.read())
        conn.close()
        assert (response.status, answer["errors"][0]["code"]) == expected
    assert json.loads(call("GET", run_url, app["api_key"]).body)["version"] == before


@pytest.mark.postgres
@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_idle_streams_hold_no_database_connection_of_their_own(app):
    """Twenty idle streams: the server's connections to the database do not grow with them
    (each process has one listening connection and its few reader threads)."""
    run_url = new_run(app)
    name = app["url"].rsplit("/", 1)[1]

    def connections() -> int:
        with psycopg.connect(ADMIN_URL) as conn:
            return conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [name]
            ).fetchone()[0]

    one = Listener(f"{run_url}stream/", app["api_key"])
    next(one.frames())
    time.sleep(0.5)
    with_one = connections()
    listeners = [Listener(f"{run_url}stream/", app["api_key"]) for _ in range(20)]
    for listener in listeners:
        next(listener.frames())
    time.sleep(0.5)
    with_many = connections()
    for listener in [one, *listeners]:
        listener.close()
    print(f"\ndatabase connections of the server: {with_one} with one stream, {with_many} with 21")
    assert with_many <= with_one + 2 * 4, (with_one, with_many)  # at most the reader pools filling
    assert with_many <= 2 * (1 + 4) + 2  # two processes: one listener + four readers each (+ requests)
