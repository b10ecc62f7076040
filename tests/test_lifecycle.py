"""The run lifecycle through the API (design §12): cancel, heartbeats, status_changed_at, and
what entering an active status clears. Both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from taskruns import signals
from taskruns.keys import issue_key
from taskruns.models import Project, Task, TaskRun, TaskRunEvent

from .conftest import bearer, error_codes, run_url, runs_url, statements_of, stored


def events_of(run) -> list[tuple]:
    return list(
        TaskRunEvent.objects.filter(run=run)
        .order_by("id")
        .values_list("kind", "from_value", "to_value", "note")
    )


def set_status(api, run, status):
    response = api.patch(run_url(run), {"status": status})
    assert response.status_code == 200, response.content
    return response


# --- The representation and creation -------------------------------------------------------


def test_a_new_run_shows_its_lifecycle_fields(api, task):
    response = api.post(runs_url(task), {})
    assert response.status_code == 201
    body = response.json()
    row = TaskRun.objects.get(pk=body["id"])
    assert body["status_changed_at"] is not None
    assert row.status_changed_at == row.created_at or abs(row.status_changed_at - row.created_at) < timedelta(
        1
    )
    assert body["last_heartbeat_at"] is None
    assert body["cancel_requested_at"] is None
    assert body["error_code"] is None
    # TASKRUNS["HEARTBEAT_TIMEOUT"] defaults to None: a run is never reaped for silence.
    assert body["heartbeat_timeout"] is None
    assert row.heartbeat_timeout is None


def test_a_run_is_created_with_the_heartbeat_timeout_it_asks_for(api, task, settings):
    settings.TASKRUNS = {**settings.TASKRUNS, "HEARTBEAT_TIMEOUT": 120}
    asked = api.post(runs_url(task), {"heartbeat_timeout": 30}).json()
    assert asked["heartbeat_timeout"] == 30
    assert TaskRun.objects.get(pk=asked["id"]).heartbeat_timeout == timedelta(seconds=30)
    default = api.post(runs_url(task), {}).json()
    assert default["heartbeat_timeout"] == 120
    assert TaskRun.objects.get(pk=default["id"]).heartbeat_timeout == timedelta(seconds=120)
    never = api.post(runs_url(task), {"heartbeat_timeout": None}).json()
    assert never["heartbeat_timeout"] is None
    assert TaskRun.objects.get(pk=never["id"]).heartbeat_timeout is None


@pytest.mark.parametrize(
    ("value", "code"),
    [(0, "min_value"), (-5, "min_value"), ("soon", "invalid"), (10**9, "max_value"), (True, "invalid")],
)
def test_a_bad_heartbeat_timeout_is_a_400_and_creates_nothing(api, task, value, code):
    response = api.post(runs_url(task), {"heartbeat_timeout": value})
    assert response.status_code == 400
    assert error_codes(response) == {"heartbeat_timeout": code}
    assert not TaskRun.objects.filter(task=task).exists()


# --- status_changed_at and what entering an active status clears ----------------------------


def test_entering_a_status_stamps_status_changed_at_and_nothing_else_does(api, run):
    before = stored(run)["status_changed_at"]
    set_status(api, run, "in_progress")
    entered = stored(run)["status_changed_at"]
    assert entered > before
    set_status(api, run, "in_progress")  # the same status: a no-op for the status
    api.patch(run_url(run), {"state": {"a": 1}, "stage": "build"})
    assert stored(run)["status_changed_at"] == entered
    body = set_status(api, run, "completed").json()
    assert stored(run)["status_changed_at"] > entered
    assert body["status_changed_at"] == body["completed_at"]


def test_entering_queued_or_in_progress_clears_a_cancel_request(api, run):
    set_status(api, run, "in_progress")
    assert api.post(run_url(run, "cancel"), {}).status_code == 202
    assert stored(run)["cancel_requested_at"] is not None
    body = set_status(api, run, "queued").json()
    assert body["cancel_requested_at"] is None
    assert stored(run)["cancel_requested_at"] is None
    # Cancelled again and moved into in_progress: cleared again (queued cancels at once, so
    # the request is made while in progress).
    set_status(api, run, "in_progress")
    api.post(run_url(run, "cancel"), {})
    TaskRun.objects.filter(pk=run.pk).update(status="queued")
    set_status(api, run, "in_progress")
    assert stored(run)["cancel_requested_at"] is None


def test_writing_the_current_active_status_again_keeps_the_cancel_request(api, run):
    set_status(api, run, "in_progress")
    api.post(run_url(run, "cancel"), {})
    requested = stored(run)["cancel_requested_at"]
    set_status(api, run, "in_progress")
    assert stored(run)["cancel_requested_at"] == requested


def test_resume_in_cloud_clears_the_last_attempts_error_code_and_cancel_request(api, run):
    old = timezone.now() - timedelta(days=2)
    TaskRun.objects.filter(pk=run.pk).update(
        status="failed",
        error_code="heartbeat_timeout",
        cancel_requested_at=old,
        last_heartbeat_at=old,
        status_changed_at=old,
    )
    body = api.post(run_url(run, "resume_in_cloud")).json()
    row = stored(run)
    assert (row["status"], row["environment"]) == ("queued", "cloud")
    assert row["error_code"] is None and body["error_code"] is None
    assert row["cancel_requested_at"] is None and body["cancel_requested_at"] is None
    assert row["status_changed_at"] > old + timedelta(days=1)


def test_resume_in_cloud_of_a_locally_queued_run_queues_it_from_now(api, run):
    old = timezone.now() - timedelta(days=2)
    TaskRun.objects.filter(pk=run.pk).update(status_changed_at=old)
    assert api.post(run_url(run, "resume_in_cloud")).status_code == 200
    assert stored(run)["status_changed_at"] > old + timedelta(days=1)


# --- cancel -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["not_started", "queued"])
def test_cancel_of_a_run_no_executor_has_cancels_it_at_once(api, run, status):
    TaskRun.objects.filter(pk=run.pk).update(status=status)
    version = stored(run)["version"]
    response = api.post(run_url(run, "cancel"), {"reason": "not needed any more"})
    assert response.status_code == 200
    body = response.json()
    row = stored(run)
    assert body["status"] == row["status"] == "cancelled"
    assert row["completed_at"] is not None and row["cancel_requested_at"] is not None
    assert row["version"] == version + 1 == body["version"]
    assert events_of(run)[-2:] == [
        ("cancel_requested", status, "", "not needed any more"),
        ("status_changed", status, "cancelled", ""),
    ]
    assert response["ETag"] == f'"{version + 1}"'


def test_cancel_of_an_in_progress_run_asks_its_executor_to_stop(api, run):
    set_status(api, run, "in_progress")
    version = stored(run)["version"]
    response = api.post(run_url(run, "cancel"), {"reason": "user pressed stop"})
    assert response.status_code == 202
    row = stored(run)
    assert row["status"] == "in_progress" == response.json()["status"]
    assert row["cancel_requested_at"] is not None
    assert response.json()["cancel_requested_at"] is not None
    assert row["version"] == version + 1
    assert events_of(run)[-1] == ("cancel_requested", "in_progress", "", "user pressed stop")
    # The executor learns it from its heartbeat and from a GET, then ends the run itself.
    assert api.post(run_url(run, "heartbeat")).json()["cancel_requested"] is True
    assert api.get(run_url(run)).json()["cancel_requested_at"] is not None
    set_status(api, run, "cancelled")
    assert stored(run)["status"] == "cancelled"


def test_repeating_a_cancel_is_harmless(api, run):
    set_status(api, run, "in_progress")
    first = api.post(run_url(run, "cancel"), {})
    after_first = stored(run)
    second = api.post(run_url(run, "cancel"), {"reason": "again"})
    assert (first.status_code, second.status_code) == (202, 202)
    assert stored(run) == after_first
    assert [event[0] for event in events_of(run)].count("cancel_requested") == 1


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_cancel_of_a_finished_run_changes_nothing(api, run, status):
    TaskRun.objects.filter(pk=run.pk).update(status=status)
    before, history = stored(run), events_of(run)
    response = api.post(run_url(run, "cancel"), {})
    assert response.status_code == 200
    assert response.json()["status"] == status
    assert stored(run) == before
    assert events_of(run) == history


def test_cancel_without_a_body_is_accepted(api, run):
    response = api.post(run_url(run, "cancel"))
    assert response.status_code == 200
    assert stored(run)["status"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "code"), [({"reason": "x" * 501}, "max_length"), ({"reason": 5}, "invalid")]
)
def test_a_bad_cancel_reason_is_a_400_and_changes_nothing(api, run, body, code):
    before = stored(run)
    response = api.post(run_url(run, "cancel"), body)
    assert response.status_code == 400
    assert error_codes(response) == {"reason": code}
    assert stored(run) == before


def test_cancel_honours_if_match(api, run):
    before = stored(run)
    response = api.post(run_url(run, "cancel"), {}, HTTP_IF_MATCH=f'"{before["version"] + 5}"')
    assert response.status_code == 412
    assert stored(run) == before


def test_cancel_follows_a_hosts_transition_table(api, run, settings):
    table = {
        "not_started": ["queued", "in_progress"],
        "queued": ["in_progress", "failed"],
        "in_progress": ["queued", "completed", "failed", "cancelled"],
        "completed": [],
        "failed": [],
        "cancelled": [],
    }
    settings.TASKRUNS = {**settings.TASKRUNS, "TRANSITIONS": table}
    before = stored(run)
    response = api.post(run_url(run, "cancel"), {})
    assert response.status_code == 409
    assert error_codes(response) == {None: "invalid_transition"}
    assert stored(run) == before


def test_a_cancel_request_is_announced_after_commit(api, run, django_capture_on_commit_callbacks):
    received = []

    def receiver(sender, run, **kwargs):
        received.append((str(run.pk), run.status))

    signals.run_cancel_requested.connect(receiver)
    try:
        set_status(api, run, "in_progress")
        with django_capture_on_commit_callbacks(execute=True):
            api.post(run_url(run, "cancel"), {})
            api.post(run_url(run, "cancel"), {})  # repeated: nothing new to announce
    finally:
        signals.run_cancel_requested.disconnect(receiver)
    assert received == [(str(run.pk), "in_progress")]


# --- heartbeat --------------------------------------------------------------------------------


def test_a_heartbeat_records_that_the_executor_is_alive_without_changing_the_run(api, run):
    set_status(api, run, "in_progress")
    before = stored(run)
    response = api.post(run_url(run, "heartbeat"))
    assert response.status_code == 200
    assert response.json() == {
        "status": "in_progress",
        "version": before["version"],
        "cancel_requested": False,
    }
    after = stored(run)
    assert after["last_heartbeat_at"] is not None
    assert after["last_heartbeat_at"] >= before["updated_at"]
    assert {k: v for k, v in after.items() if k != "last_heartbeat_at"} == {
        k: v for k, v in before.items() if k != "last_heartbeat_at"
    }
    assert api.get(run_url(run)).json()["last_heartbeat_at"] is not None


def test_a_heartbeat_ignores_a_body(api, run):
    set_status(api, run, "in_progress")
    assert api.post(run_url(run, "heartbeat"), {"anything": 1}).status_code == 200


@pytest.mark.parametrize("status", ["not_started", "queued", "completed", "failed", "cancelled"])
def test_a_heartbeat_for_a_run_not_in_progress_tells_the_executor_to_stop(api, run, status):
    TaskRun.objects.filter(pk=run.pk).update(status=status)
    before = stored(run)
    response = api.post(run_url(run, "heartbeat"))
    assert response.status_code == 409
    assert error_codes(response) == {None: "run_not_in_progress"}
    assert response.json()["current_status"] == status
    assert stored(run) == before


def test_a_heartbeat_is_one_statement_on_the_runs_table(api, run):
    set_status(api, run, "in_progress")
    response, sql = statements_of(lambda: api.post(run_url(run, "heartbeat")))
    assert response.status_code == 200
    on_runs = [statement for statement in sql if TaskRun._meta.db_table in statement.split(" WHERE ")[0]]
    assert len(on_runs) == 1
    assert on_runs[0].startswith("UPDATE")


def test_a_heartbeat_is_scoped_like_a_get(api, run, task):
    set_status(api, run, "in_progress")
    stranger = get_user_model().objects.create_user("stranger", password="pw")
    Project.objects.create(name="Elsewhere").members.add(stranger)
    outsider = bearer(issue_key(stranger, "theirs")[1])
    assert outsider.post(run_url(run, "heartbeat")).status_code == 404
    assert bearer("trk_notakey").post(run_url(run, "heartbeat")).status_code == 401
    assert stored(run)["last_heartbeat_at"] is None
    # A run of a deleted task is gone too.
    Task.objects.filter(pk=task.pk).update(deleted_at=timezone.now())
    assert api.post(run_url(run, "heartbeat")).status_code == 404
    assert api.post(run_url(run, "cancel")).status_code == 404
