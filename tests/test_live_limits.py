"""Body limits and a flood of catastrophic patterns against a live gunicorn server (issue 14,
design §11): what the server does with a chunked body, a body past the app's limit and past
Django's own upload limit, and many parallel outputs checked against ``^(a+)+$`` while another
request waits to be served. The demo project is served from a SQLite file of its own."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import sqlite3
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .live import call, serve_demo

#: Client timeout: an answer slower than this counts as a hang (a guard, not a benchmark).
GUARD = 30


@pytest.fixture(scope="module")
def app():
    directory = tempfile.mkdtemp(prefix="taskruns-live-")
    database = Path(directory) / "db.sqlite3"
    overrides = {"STREAM_WSGI_MAX_SECONDS": 2, "STREAM_POLL_SECONDS": 1}
    with serve_demo(f"sqlite:///{database}", {"TASKRUNS_OVERRIDES": json.dumps(overrides)}) as served:
        yield {**served, "database": database}


def version_of(app) -> tuple[int, str]:
    with sqlite3.connect(app["database"]) as conn:
        version, state = conn.execute(
            "SELECT version, state FROM taskruns_taskrun WHERE id = ?", [app["run_id"].replace("-", "")]
        ).fetchone()
    return version, state


def raw_patch(app, body_chunks, headers) -> tuple[int, dict]:
    """A PATCH sent with http.client, so the test decides the framing (chunked or not)."""
    url = urlsplit(app["run_url"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=GUARD)
    try:
        # The server may answer and close before the whole body is sent: then read its answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request(
                "PATCH",
                url.path,
                body=body_chunks,
                headers={
                    "Authorization": f"Bearer {app['api_key']}",
                    "Content-Type": "application/json",
                    **headers,
                },
                encode_chunked="Content-Length" not in headers,
            )
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_a_chunked_body_is_refused_with_411_and_applies_nothing(app):
    before = version_of(app)
    body = json.dumps({"state": {"chunked": True}}).encode()
    status, answer = raw_patch(app, iter([body[:10], body[10:]]), {"Transfer-Encoding": "chunked"})
    assert status == 411 and answer["errors"][0]["code"] == "length_required"
    assert version_of(app) == before


@pytest.mark.parametrize(
    "size", [1024 * 1024 + 1, 3 * 1024 * 1024], ids=["past the app's limit", "past Django's"]
)
def test_a_body_past_the_limit_is_a_413_before_it_is_read(app, size):
    before = version_of(app)
    body = b'{"state": {"big": "' + b"x" * size + b'"}}'
    status, answer = raw_patch(app, body, {"Content-Length": str(len(body))})
    assert status == 413 and answer["errors"][0]["code"] == "request_too_large"
    assert version_of(app) == before


def test_a_chunked_body_past_the_limit_is_refused_too(app):
    before = version_of(app)
    chunks = (b"x" * 65536 for _ in range(64))  # 4 MiB, never declared
    status, answer = raw_patch(app, chunks, {"Transfer-Encoding": "chunked"})
    assert status == 411 and answer["errors"][0]["code"] == "length_required"
    assert version_of(app) == before


def test_many_parallel_catastrophic_patterns_are_answered_and_so_is_everyone_else(app):
    """A task whose schema is ^(a+)+$ (exponential in a backtracking engine: 35 characters took
    every gunicorn worker down before) gets many parallel outputs built to backtrack; each is
    answered, and so is another request sent in the middle of them."""
    key, base = app["api_key"], app["base"]
    tasks = f"{base}/api/projects/{app['project_id']}/tasks/"
    task = call(
        "POST", tasks, key, {"title": "evil", "json_schema": {"type": "string", "pattern": "^(a+)+$"}}
    )
    assert task.status == 201, task.body
    task_id = json.loads(task.body)["id"]
    run = call("POST", f"{tasks}{task_id}/runs/", key, {})
    assert run.status == 201, run.body
    run_url = f"{tasks}{task_id}/runs/{json.loads(run.body)['id']}/set_output/"
    answers: list = []

    def evil(length: int) -> None:
        answers.append(call("PATCH", run_url, key, {"output": "a" * length + "!"}, timeout=GUARD))

    threads = [threading.Thread(target=evil, args=(length,)) for length in [35, 40, 100, 10_000] * 4]
    for thread in threads:
        thread.start()
    other = call("GET", app["run_url"], key, timeout=GUARD)
    for thread in threads:
        thread.join(timeout=GUARD * 2)
    assert other.status == 200
    assert len(answers) == len(threads)
    assert all(answer.status == 400 and answer.code == "output_schema_mismatch" for answer in answers), [
        (a.status, a.code) for a in answers
    ]
    print(
        f"\n{len(answers)} parallel catastrophic-pattern outputs: all 400 in "
        f"{max(a.seconds for a in answers):.3f} s at most; another GET meanwhile: {other.seconds:.3f} s"
    )


def test_a_stream_under_a_wsgi_worker_is_bounded_and_then_rotated(app):
    """Under gunicorn's sync workers a stream holds a worker, so it ends after
    STREAM_WSGI_MAX_SECONDS (2 here) with an `end` frame, and the worker serves others again."""
    url = urlsplit(app["run_url"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=GUARD)
    conn.request("GET", f"{url.path}stream/", headers={"Authorization": f"Bearer {app['api_key']}"})
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
    text = response.read().decode()  # returns when the server ends the stream
    conn.close()
    events = [line[7:] for line in text.splitlines() if line.startswith("event: ")]
    assert events[0] == "state" and events[-1] == "end"
    assert '"rotated"' in text.rsplit("event: end", 1)[1]
    assert call("GET", app["run_url"], app["api_key"]).status == 200


@pytest.mark.parametrize(
    "request_bytes",
    [b"NOT A REQUEST LINE\r\n\r\n", b"GET /api/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"],
    ids=["malformed request line", "header too large"],
)
def test_errors_gunicorn_answers_itself_are_json(app, request_bytes):
    """Requests gunicorn refuses before Django sees them answer in the API's error shape
    (config/gunicorn.conf.py), not with gunicorn's HTML page."""
    url = urlsplit(app["base"])
    with socket.create_connection((url.hostname, url.port), timeout=GUARD) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 4"), head
    assert b"Content-Type: application/json" in head
    error = json.loads(body)
    assert error["type"] == "client_error" and error["errors"][0]["code"]
