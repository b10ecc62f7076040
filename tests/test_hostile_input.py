"""Hostile input from a tenant (issue 14, design §11): task schemas that would fetch, files that
would be read, patterns that would backtrack, quotas, malformed preconditions, OPTIONS out of
scope, the log's media type, and a staff user in the admin who is not a superuser.

Every refusal is checked through the HTTP API and against the stored rows: nothing changes."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import override_settings

from taskruns import rules
from taskruns.models import ApiKey, Project, Task, TaskRun, TaskRunEvent

from .conftest import error_codes, run_url, stored, tasks_url


def create_task(api, project, schema):
    return api.post(tasks_url(project.pk), {"title": "t", "json_schema": schema}, format="json")


def set_output(api, run, output):
    return api.patch(run_url(run, "set_output"), {"output": output}, format="json")


class Listener:
    """A local TCP listener that records whether anything connected to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.sendall(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"secret": "internal"}')
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def secret_fifo():
    """A named pipe: if anything opens it for reading, a non-blocking open for writing succeeds
    (it fails with ENXIO while no reader has it open), so an attempt to read it is seen."""
    directory = tempfile.mkdtemp()
    path = os.path.join(directory, "target.json")
    os.mkfifo(path)
    opened = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.005)
                continue
            opened.set()
            os.write(fd, b'{"secret": "from a file"}')
            os.close(fd)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    yield path, opened
    stop.set()
    thread.join()
    os.unlink(path)
    os.rmdir(directory)


# --- task schemas ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_schema",
    [
        lambda port, path: {"$ref": f"http://127.0.0.1:{port}/schema.json"},
        lambda port, path: {"properties": {"a": {"$ref": f"http://127.0.0.1:{port}/a.json#/x"}}},
        lambda port, path: {"$id": f"http://127.0.0.1:{port}/base/", "$ref": "other.json"},
        lambda port, path: {"$schema": f"http://127.0.0.1:{port}/meta.json"},
        lambda port, path: {"$ref": f"file://{path}"},
        lambda port, path: {"items": {"$ref": f"file://{path}#/secret"}},
    ],
    ids=["http", "nested http", "relative to an $id", "$schema", "file", "nested file"],
)
def test_a_schema_that_points_outside_itself_is_refused_without_fetching_or_reading(
    api, project, listener, secret_fifo, make_schema
):
    path, opened = secret_fifo
    before = Task.objects.count()
    response = create_task(api, project, make_schema(listener.port, path))
    assert response.status_code == 400, response.content
    assert set(error_codes(response).values()) <= {"invalid_json_schema", "unsupported_dialect"}
    assert "secret" not in response.content.decode()
    assert Task.objects.count() == before
    time.sleep(0.05)  # a connection or open, had there been one, is seen by now
    assert listener.connections == 0 and not opened.is_set()


def test_a_stored_schema_that_points_outside_is_refused_at_set_output_without_fetching(
    api, run, listener, secret_fifo
):
    """A schema written before the write-time check (straight into the table) still cannot
    make the server fetch or read: the validator's retriever refuses everything."""
    path, opened = secret_fifo
    for schema in ({"$ref": f"http://127.0.0.1:{listener.port}/s.json"}, {"$ref": f"file://{path}"}):
        Task.objects.filter(pk=run.task_id).update(json_schema=schema)
        before = stored(run)
        response = set_output(api, run, {"a": 1})
        assert response.status_code == 400 and error_codes(response) == {"output": "invalid_json_schema"}
        assert "secret" not in response.content.decode()
        assert stored(run) == before
    time.sleep(0.05)
    assert listener.connections == 0 and not opened.is_set()


@pytest.mark.parametrize(
    ("schema", "code"),
    [
        ({"$schema": 5}, "unsupported_dialect"),
        ({"$schema": "https://example.com/my-dialect"}, "unsupported_dialect"),
        ({"type": "strung"}, "invalid_json_schema"),
        ({"$ref": "#/definitions/missing"}, "invalid_json_schema"),
        ({"properties": {"a": {"$ref": "#/nope"}}}, "invalid_json_schema"),
        ({"pattern": "(?=lookahead)"}, "invalid_json_schema"),
        ({"pattern": "(a)\\1"}, "invalid_json_schema"),
        ({"pattern": "["}, "invalid_json_schema"),
        ([1, 2], "not_an_object"),
    ],
)
def test_an_invalid_or_unsafe_schema_is_a_400_on_write(api, project, schema, code):
    before = Task.objects.count()
    response = create_task(api, project, schema)
    assert response.status_code == 400, response.content
    assert error_codes(response) == {"json_schema": code}
    assert Task.objects.count() == before


def test_an_invalid_schema_cannot_replace_a_good_one(api, task):
    response = api.patch(
        f"{tasks_url(task.project_id)}{task.pk}/", {"json_schema": {"type": 7}}, format="json"
    )
    assert response.status_code == 400
    task.refresh_from_db()
    assert task.json_schema is None


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},  # refers to itself: fine, it resolves within the schema
        {
            "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
            "$ref": "#/$defs/node",
        },
        {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"a": {"type": "string"}}},
        {"type": "string", "pattern": "^(a+)+$"},
    ],
    ids=["self", "recursive", "draft-07", "nested quantifiers"],
)
def test_schemas_that_resolve_within_themselves_are_accepted(api, project, schema):
    response = create_task(api, project, schema)
    assert response.status_code == 201, response.content
    assert Task.objects.get(pk=response.json()["id"]).json_schema == schema


def test_a_catastrophic_pattern_is_matched_in_linear_time(api, run):
    """^(a+)+$ backtracks exponentially in Python's re; here it answers like any mismatch.
    (Speed is not asserted: the live test bounds it with a generous deadline.)"""
    Task.objects.filter(pk=run.task_id).update(json_schema={"type": "string", "pattern": "^(a+)+$"})
    response = set_output(api, run, "a" * 50_000 + "!")
    assert response.status_code == 400 and error_codes(response) == {"output": "output_schema_mismatch"}
    assert set_output(api, run, "a" * 50_000).status_code == 200


def test_unique_items_over_many_objects_validates(api, run):
    Task.objects.filter(pk=run.task_id).update(json_schema={"type": "array", "uniqueItems": True})
    items = [{"n": n} for n in range(8_000)]
    assert set_output(api, run, items).status_code == 200
    before = stored(run)
    response = set_output(api, run, [*items, {"n": 0}])
    assert response.status_code == 400 and error_codes(response) == {"output": "output_schema_mismatch"}
    assert stored(run) == before


def test_a_mismatch_message_does_not_echo_a_huge_output(api, run):
    Task.objects.filter(pk=run.task_id).update(json_schema={"type": "integer"})
    response = set_output(api, run, "x" * 500_000)
    assert response.status_code == 400
    assert len(response.content) < 2_000


# --- quotas ------------------------------------------------------------------------------


@override_settings(TASKRUNS={"MAX_OUTPUT_BYTES": 100})
def test_an_output_over_the_limit_after_a_merge_is_a_413(api, run):
    """Measured on the merged value, on both executors (the PATCH path), and on set_output."""
    assert api.patch(run_url(run), {"output": {"a": "x" * 40}}, format="json").status_code == 200
    before = stored(run)
    response = api.patch(run_url(run), {"output": {"b": "y" * 60}}, format="json")
    assert response.status_code == 413 and error_codes(response) == {None: "output_too_large"}
    assert stored(run) == before
    response = set_output(api, run, {"c": "z" * 200})
    assert response.status_code == 413 and error_codes(response) == {None: "output_too_large"}
    assert stored(run) == before
    size = rules.state_size({"a": "x" * 40, "b": "y" * 40})
    assert size <= 100
    assert api.patch(run_url(run), {"output": {"b": "y" * 40}}, format="json").status_code == 200


@override_settings(TASKRUNS={"LOG_MAX_BYTES_PER_RUN": 100})
def test_a_log_over_its_byte_quota_is_a_413_and_keeps_nothing_of_the_call(api, run):
    entry = {"line": "x" * 30}  # 41 bytes as compact JSON
    assert rules.log_entry_size(entry) == 41
    response = api.post(run_url(run, "append_log"), {"entries": [entry, entry]}, format="json")
    assert response.status_code == 200
    before = stored(run)
    response = api.post(run_url(run, "append_log"), {"entries": [entry]}, format="json")
    assert response.status_code == 413 and error_codes(response) == {None: "log_full"}
    assert stored(run) == before and before["log_byte_count"] == 82


@override_settings(TASKRUNS={"HISTORY_MAX_KEYS": 5})
def test_a_history_event_keeps_a_bounded_list_of_key_names(api, run):
    state = {f"key{n:03}": n for n in range(50)}
    state["k" * 5000] = 1
    response = api.patch(run_url(run), {"status": "in_progress", "state": state}, format="json")
    assert response.status_code == 200
    event = TaskRunEvent.objects.filter(run=run, kind="status_changed").get()
    assert event.state_keys_set == sorted(state)[:5]
    assert len(TaskRun.objects.get(pk=run.pk).state) == 51  # the state itself is whole
    response = api.patch(
        run_url(run), {"status": "completed", "state_remove_keys": ["k" * 5000]}, format="json"
    )
    event = TaskRunEvent.objects.filter(run=run, kind="status_changed").latest("id")
    assert event.state_keys_removed == ["k" * 199 + "…"]


# --- preconditions, OPTIONS, the log's media type ----------------------------------------


@pytest.mark.parametrize("header", ['"²"', '"' + "9" * 5000 + '"', '"١٢"', "W/" * 2000 + '"1"', '"' * 9000])
def test_a_malformed_if_match_fails_the_precondition_and_never_500s(api, run, header):
    before = stored(run)
    response = api.patch(run_url(run), {"stage": "x"}, format="json", HTTP_IF_MATCH=header)
    assert response.status_code in (400, 412), response.content
    assert stored(run) == before
    response = api.get(run_url(run), HTTP_IF_NONE_MATCH=header)
    assert response.status_code == 200


def test_options_on_a_run_of_another_project_is_a_404(api, run, db):
    stranger = get_user_model().objects.create_user("stranger")
    other_project = Project.objects.create(name="theirs")
    other_project.members.add(stranger)
    their_task = Task.objects.create(project=other_project, title="theirs")
    their_run = TaskRun.objects.create(task=their_task, project=other_project)
    assert api.options(run_url(run)).status_code == 200
    for url in (
        run_url(their_run),
        f"{tasks_url(other_project.pk)}{their_task.pk}/runs/",
        tasks_url(other_project.pk),
    ):
        response = api.options(url)
        assert response.status_code == 404, url
        assert "actions" not in response.json() and "name" not in response.json()


def test_the_log_answers_its_own_media_type(api, run):
    api.post(run_url(run, "append_log"), {"entries": [{"n": 1}]}, format="json")
    response = api.get(run_url(run, "logs"), HTTP_ACCEPT="application/x-ndjson")
    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    assert b"".join(response.streaming_content) == b'{"n":1}\n'
    missing = run_url(run, "logs").replace(str(run.pk), "00000000-0000-0000-0000-000000000000")
    response = api.get(missing, HTTP_ACCEPT="application/x-ndjson")
    assert response.status_code == 404 and response.json()["errors"][0]["code"] == "not_found"


# --- throttling ----------------------------------------------------------------------------


@override_settings(
    TASKRUNS={"THROTTLE_RATES": {"api_key": "3/min", "user": None, "failed_authentication": None}}
)
def test_a_key_past_its_rate_gets_429_with_retry_after(api, run):
    assert [api.get(run_url(run)).status_code for _ in range(3)] == [200, 200, 200]
    before = stored(run)
    response = api.patch(run_url(run), {"stage": "over"}, format="json")
    assert response.status_code == 429 and error_codes(response) == {None: "throttled"}
    assert 0 < int(response["Retry-After"]) <= 60
    assert stored(run) == before


@override_settings(
    TASKRUNS={"THROTTLE_RATES": {"api_key": None, "user": "2/min", "failed_authentication": None}}
)
def test_a_user_past_their_rate_is_throttled_across_their_keys(api, run, user):
    from taskruns.keys import issue_key

    from .conftest import bearer

    other = bearer(issue_key(user, "second key")[1])
    assert api.get(run_url(run)).status_code == 200
    assert other.get(run_url(run)).status_code == 200
    assert other.get(run_url(run)).status_code == 429
    assert api.get(run_url(run)).status_code == 429


@override_settings(
    TASKRUNS={"THROTTLE_RATES": {"api_key": None, "user": None, "failed_authentication": "5/min"}}
)
def test_guessing_keys_is_throttled_even_for_the_right_key_afterwards(api, run):
    from .conftest import bearer

    guesser = bearer("trk_" + "A" * 43)
    assert [guesser.get(run_url(run)).status_code for _ in range(5)] == [401] * 5
    response = guesser.get(run_url(run))
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    # The same address now gets no answer about any key, the right one included.
    assert api.get(run_url(run)).status_code == 429
    assert ApiKey.objects.filter(last_used_at__isnull=False).count() == 0


def test_the_demo_throttles_failed_admin_logins(client, db):
    get_user_model().objects.create_superuser("root", password="right")
    for _ in range(10):
        assert client.post("/admin/login/", {"username": "root", "password": "wrong"}).status_code == 200
    response = client.post("/admin/login/", {"username": "root", "password": "right"})
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session
    response = client.post("/api-auth/login/", {"username": "root", "password": "right"})
    assert response.status_code == 429


# --- the admin, for staff who are not superusers ------------------------------------------


@pytest.fixture
def staff(db, project):
    """A staff member of ``project`` with every taskruns permission, who is not a superuser."""
    member = get_user_model().objects.create_user("staffer", password="pw", is_staff=True)
    member.user_permissions.set(Permission.objects.filter(content_type__app_label="taskruns"))
    project.members.add(member)
    return member


@pytest.fixture
def staff_client(client, staff):
    client.login(username="staffer", password="pw")
    return client


def test_staff_see_only_their_projects_in_the_admin(staff_client, run, db):
    other_project = Project.objects.create(name="someone else's")
    their_task = Task.objects.create(project=other_project, title="their secret task")
    their_run = TaskRun.objects.create(task=their_task, project=other_project, state={"secret": 1})
    assert their_task.title not in staff_client.get("/admin/taskruns/task/").content.decode()
    assert str(their_run.pk) not in staff_client.get("/admin/taskruns/taskrun/").content.decode()
    assert str(run.pk) in staff_client.get("/admin/taskruns/taskrun/").content.decode()
    assert (
        staff_client.get(f"/admin/taskruns/taskrun/{their_run.pk}/change/").status_code == 302
    )  # "not found"
    assert staff_client.get(f"/admin/taskruns/task/{their_task.pk}/change/").status_code == 302
    assert other_project.name not in staff_client.get("/admin/taskruns/project/").content.decode()
    # The live page and its stream are scoped the same way.
    assert staff_client.get(f"/admin/taskruns/taskrun/{their_run.pk}/live/").status_code == 404
    assert staff_client.get(f"/admin/taskruns/taskrun/{their_run.pk}/live/stream/").status_code == 404
    page = staff_client.get(f"/admin/taskruns/taskrun/{run.pk}/live/")
    assert (
        page.status_code == 200 and f"/admin/taskruns/taskrun/{run.pk}/live/stream/" in page.content.decode()
    )


def test_staff_issue_keys_only_for_themselves_and_the_key_never_enters_a_cookie(staff_client, staff, db):
    boss = get_user_model().objects.create_superuser("boss", password="pw")
    form = staff_client.get("/admin/taskruns/apikey/add/").content.decode()
    assert f'value="{boss.pk}"' not in form
    response = staff_client.post("/admin/taskruns/apikey/add/", {"user": boss.pk, "name": "as the boss"})
    assert response.status_code == 200 and not ApiKey.objects.filter(name="as the boss").exists()
    response = staff_client.post("/admin/taskruns/apikey/add/", {"user": staff.pk, "name": "mine"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(name="mine")
    assert key.user == staff
    page = response.content.decode()
    raw = page.split('id="raw-key"')[1].split(">")[1].split("<")[0]
    assert raw.startswith("trk_") and key.prefix == raw[: len(key.prefix)]
    cookies = "".join(morsel.value for morsel in response.cookies.values())
    assert raw not in cookies and raw not in "".join(m.value for m in staff_client.cookies.values())
    assert raw not in staff_client.get("/admin/taskruns/apikey/").content.decode()


def test_a_tasks_project_cannot_be_changed_in_the_admin(admin_client, task, run, db):
    elsewhere = Project.objects.create(name="elsewhere")
    page = admin_client.get(f"/admin/taskruns/task/{task.pk}/change/").content.decode()
    assert 'name="project"' not in page
    response = admin_client.post(
        f"/admin/taskruns/task/{task.pk}/change/",
        {
            "project": elsewhere.pk,
            "title": "moved?",
            "description": "",
            "repository": "",
            "json_schema": "null",
            "runs-TOTAL_FORMS": "1",
            "runs-INITIAL_FORMS": "1",
            "runs-0-id": str(run.pk),
            "runs-0-task": str(task.pk),
        },
    )
    assert response.status_code == 302  # saved: the title changed, the project did not
    task.refresh_from_db()
    assert task.title == "moved?"
    assert task.project_id == run.project_id != elsewhere.pk


def test_the_admin_refuses_an_unsafe_task_schema(admin_client, project):
    response = admin_client.post(
        "/admin/taskruns/task/add/",
        {
            "project": project.pk,
            "title": "fetching",
            "json_schema": '{"$ref": "http://127.0.0.1:9/x"}',
            "runs-TOTAL_FORMS": "0",
            "runs-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200 and "Not a valid JSON Schema" in response.content.decode()
    assert not Task.objects.filter(title="fetching").exists()
