"""set_output, append_log, logs and the run history (design §7, issue 3)."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from taskruns.keys import issue_key
from taskruns.models import Task, TaskRun, TaskRunEvent, TaskRunLogEntry

from .conftest import error_codes, run_url, runs_url, stored

SCHEMA = {
    "type": "object",
    "properties": {"pr_url": {"type": "string"}, "tests_passed": {"type": "boolean"}},
    "required": ["pr_url"],
}


def set_output(api, run, body):
    return api.patch(run_url(run, "set_output"), body, format="json")


def append(api, run, entries):
    return api.post(run_url(run, "append_log"), {"entries": entries}, format="json")


# --- set_output ---------------------------------------------------------------------------


def test_set_output_replaces_the_output(api, run):
    TaskRun.objects.filter(pk=run.pk).update(output={"old": 1})
    response = set_output(api, run, {"output": {"new": 2}})
    assert response.status_code == 200 and response.json()["output"] == {"new": 2}
    row = TaskRun.objects.get(pk=run.pk)
    assert row.output == {"new": 2} and row.version == run.version + 1
    assert row.status == "queued"  # no schema on the task: the status is left alone


def test_valid_output_completes_a_run_of_a_task_with_a_schema(api, run):
    Task.objects.filter(pk=run.task_id).update(json_schema=SCHEMA)
    response = set_output(api, run, {"output": {"pr_url": "https://x/1", "tests_passed": True}})
    assert response.status_code == 200
    row = TaskRun.objects.get(pk=run.pk)
    assert (row.status, row.output["pr_url"]) == ("completed", "https://x/1")
    assert row.completed_at is not None


@pytest.mark.parametrize(
    ("output", "fragment"),
    [({"tests_passed": True}, '"pr_url" is a required property'), ({"pr_url": 5}, "$.pr_url")],
)
def test_output_not_matching_the_schema_is_a_400(api, run, output, fragment):
    Task.objects.filter(pk=run.task_id).update(json_schema=SCHEMA)
    before = stored(run)
    response = set_output(api, run, {"output": output})
    assert response.status_code == 400 and error_codes(response) == {"output": "output_schema_mismatch"}
    assert fragment in response.json()["errors"][0]["detail"]
    assert stored(run) == before


def test_set_output_on_a_terminal_run_keeps_its_status(api, run):
    Task.objects.filter(pk=run.task_id).update(json_schema=SCHEMA)
    TaskRun.objects.filter(pk=run.pk).update(status="failed")
    assert set_output(api, run, {"output": {"pr_url": "u"}}).status_code == 200
    row = TaskRun.objects.get(pk=run.pk)
    assert (row.status, row.output) == ("failed", {"pr_url": "u"})


def test_set_output_needs_an_output(api, run):
    before = stored(run)
    response = set_output(api, run, {"pr_url": "u"})
    assert response.status_code == 400 and error_codes(response) == {"output": "required"}
    assert stored(run) == before


# --- append_log and logs ------------------------------------------------------------------


def test_appended_entries_are_read_back_in_order_as_ndjson(api, run):
    first = [{"type": "notification", "n": 1}, {"type": "text", "text": "héllo\nworld"}]
    response = append(api, run, first)
    assert response.status_code == 200
    assert append(api, run, [{"n": 3}]).status_code == 200
    for path in (run_url(run) + "logs", run_url(run, "logs")):
        logs = api.get(path)
        assert logs.status_code == 200 and logs["Content-Type"] == "application/x-ndjson"
        lines = b"".join(logs.streaming_content).decode().splitlines()
        assert [json.loads(line) for line in lines] == [*first, {"n": 3}]
    assert list(TaskRunLogEntry.objects.filter(run=run).values_list("entry", flat=True)) == [*first, {"n": 3}]
    assert all(e.created_at for e in TaskRunLogEntry.objects.filter(run=run))


def test_appending_only_counts_the_entries_and_bytes_on_the_run_row(api, run):
    before = stored(run)
    append(api, run, [{"a": 1}, {"b": 2}])
    append(api, run, [{"c": 3}])
    # Only the counts: version and updated_at included. The bytes are the entries as compact JSON.
    assert stored(run) == {**before, "log_entry_count": 3, "log_byte_count": 3 * len(b'{"a":1}')}


def test_log_url_appears_once_a_log_exists(api, run):
    assert api.get(run_url(run)).json()["log_url"] is None
    body = append(api, run, [{"a": 1}]).json()
    assert body["log_url"] == f"http://testserver{run_url(run)}logs/"
    assert api.get(run_url(run)).json()["log_url"] == body["log_url"]
    assert api.get(body["log_url"]).status_code == 200


def test_empty_log_is_an_empty_200(api, run):
    response = api.get(run_url(run) + "logs")
    assert response.status_code == 200 and b"".join(response.streaming_content) == b""


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"entries": []}, "empty"),
        ({"entries": [1]}, "not_a_dict"),
        ({"entries": [{"a": 1}, "text"]}, "not_a_dict"),
        ({"entries": {"a": 1}}, "not_a_list"),
        ({}, "required"),
    ],
)
def test_append_log_rejects_bad_bodies(api, run, body, code):
    response = api.post(run_url(run, "append_log"), body, format="json")
    assert response.status_code == 400
    assert code in error_codes(response).values()
    assert not TaskRunLogEntry.objects.exists()


@override_settings(
    TASKRUNS={"LOG_MAX_ENTRIES_PER_CALL": 3, "LOG_MAX_ENTRY_BYTES": 50, "LOG_MAX_ENTRIES_PER_RUN": 5}
)
def test_append_log_limits(api, run):
    response = append(api, run, [{"n": i} for i in range(4)])
    assert response.status_code == 400 and error_codes(response) == {"entries": "too_many_entries"}
    response = append(api, run, [{"text": "x" * 60}])
    assert response.status_code == 400 and error_codes(response) == {"entries": "entry_too_large"}
    assert append(api, run, [{"n": i} for i in range(3)]).status_code == 200
    response = append(api, run, [{"n": i} for i in range(3)])
    assert response.status_code == 413 and response.json()["code"] == "log_full"
    assert TaskRunLogEntry.objects.filter(run=run).count() == 3


def test_logs_of_another_projects_run_are_404(api, run):
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    other = get_user_model().objects.create_user("other")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_key(other, 'k')[1]}")
    append(api, run, [{"secret": 1}])
    assert client.get(run_url(run) + "logs").status_code == 404
    assert client.post(run_url(run, "append_log"), {"entries": [{"a": 1}]}, format="json").status_code == 404
    assert TaskRunLogEntry.objects.filter(run=run).count() == 1


# --- history ------------------------------------------------------------------------------


def events(api, run):
    return api.get(run_url(run, "events")).json()["results"]


def test_history_records_every_kind_of_change_with_who_and_what(api, task, user, raw_key):
    run_id = api.post(runs_url(task), {"status": "not_started"}, format="json").json()["id"]
    run = TaskRun.objects.get(pk=run_id)
    api.patch(run_url(run), {"status": "in_progress", "state": {"b": 1, "a": 2}}, format="json")
    api.patch(run_url(run), {"stage": "plan", "state": {"quiet": 1}}, format="json")  # no event
    TaskRun.objects.filter(pk=run.pk).update(environment="cloud")
    api.patch(run_url(run), {"environment": "local", "state_remove_keys": ["a"]}, format="json")
    api.patch(run_url(run, "set_output"), {"output": {"x": 1}}, format="json")
    api.patch(run_url(run), {"status": "failed"}, format="json")
    api.post(run_url(run, "resume_in_cloud"), format="json")
    rows = events(api, run)
    assert [(e["kind"], e["from_value"], e["to_value"]) for e in rows] == [
        ("created", "", "not_started"),
        ("status_changed", "not_started", "in_progress"),
        ("environment_changed", "cloud", "local"),
        ("output_set", "", ""),
        ("status_changed", "in_progress", "failed"),
        ("status_changed", "failed", "queued"),
        ("environment_changed", "local", "cloud"),
        ("resumed_in_cloud", "", ""),
    ]
    assert rows[1]["state_keys_set"] == ["a", "b"] and rows[2]["state_keys_removed"] == ["a"]
    assert {(e["user"], e["api_key"], e["via"]) for e in rows} == {("member", raw_key[:12], "api")}
    assert TaskRunEvent.objects.filter(run=run).count() == 8


def test_history_is_paginated_oldest_first(api, run):
    for status in ("in_progress", "queued", "in_progress"):
        api.patch(run_url(run), {"status": status}, format="json")
    page = api.get(run_url(run, "events"), {"limit": 2}).json()
    assert page["count"] == 4 and [e["kind"] for e in page["results"]] == ["created", "status_changed"]
    assert page["results"][0]["id"] < page["results"][1]["id"]


def test_rejected_changes_leave_no_history(api, run):
    api.patch(run_url(run), {"status": "cancelled"}, format="json")
    api.patch(run_url(run), {"status": "in_progress"}, format="json")
    assert [e["kind"] for e in events(api, run)] == ["created", "status_changed"]


def test_admin_changes_are_recorded_with_the_admin_user(client, run, django_user_model):
    django_user_model.objects.create_superuser("boss", password="pw")
    client.login(username="boss", password="pw")
    for action in ("mark_failed", "resume_in_cloud"):  # each confirmed on its confirmation page
        client.post(
            "/admin/taskruns/taskrun/", {"action": action, "_selected_action": [str(run.pk)], "post": "yes"}
        )
    rows = list(TaskRunEvent.objects.filter(run=run).order_by("id"))
    assert [(e.kind, e.from_value, e.to_value) for e in rows[1:]] == [
        ("status_changed", "queued", "failed"),
        ("status_changed", "failed", "queued"),
        ("environment_changed", "local", "cloud"),
        ("resumed_in_cloud", "", ""),
    ]
    assert {(e.actor_user.username, e.via, e.actor_api_key) for e in rows[1:]} == {("boss", "admin", None)}
    page = client.get(f"/admin/taskruns/taskrun/{run.pk}/change/").content.decode()
    assert "resumed in cloud" in page


def test_migration_0006_counts_the_entries_of_existing_logs(run, task):
    from importlib import import_module

    from django.apps import apps

    other = TaskRun.objects.create(task=task, project=task.project)
    TaskRunLogEntry.objects.bulk_create(TaskRunLogEntry(run=run, entry={"n": n}) for n in range(3))
    TaskRun.objects.update(log_entry_count=0)  # as the rows were before the column existed
    import_module("taskruns.migrations.0006_run_log_entry_count").count_existing_entries(apps, None)
    assert TaskRun.objects.get(pk=run.pk).log_entry_count == 3
    assert TaskRun.objects.get(pk=other.pk).log_entry_count == 0
