"""PATCH …/runs/{id}/ — the PatchedTaskRunUpdate rules of design §4."""

from __future__ import annotations

import pytest
from django.test import override_settings

from taskruns.models import TaskRun

from .conftest import error_codes, run_url, stored


def patch(api, run, body):
    return api.patch(run_url(run), body, format="json")


def test_patch_returns_the_full_run_and_bumps_version(api, run):
    response = patch(api, run, {"stage": "plan"})
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(run.pk) and body["stage"] == "plan" and body["version"] == run.version + 1
    assert set(body) >= {"status", "environment", "state", "output", "log_url", "created_at", "completed_at"}
    assert TaskRun.objects.get(pk=run.pk).version == run.version + 1


def test_state_is_shallow_merged(api, run):
    TaskRun.objects.filter(pk=run.pk).update(state={"a": 1, "nested": {"x": 1}})
    response = patch(api, run, {"state": {"b": 2, "nested": {"y": 2}}})
    assert response.status_code == 200
    assert response.json()["state"] == {"a": 1, "b": 2, "nested": {"y": 2}}
    assert TaskRun.objects.get(pk=run.pk).state == {"a": 1, "b": 2, "nested": {"y": 2}}


def test_two_state_merges_both_survive(api, run):
    patch(api, run, {"state": {"first": 1}})
    patch(api, run, {"state": {"second": 2}})
    assert TaskRun.objects.get(pk=run.pk).state == {"first": 1, "second": 2}


@pytest.mark.parametrize("bad_state", [[1, 2], "text", 3, True, None])
def test_state_must_be_an_object(api, run, bad_state):
    TaskRun.objects.filter(pk=run.pk).update(state={"keep": 1})
    before = stored(run)
    response = patch(api, run, {"state": bad_state})
    assert response.status_code == 400
    assert "state" in error_codes(response)
    assert stored(run) == before


def test_state_remove_keys_removes_before_merge(api, run):
    TaskRun.objects.filter(pk=run.pk).update(state={"a": 1, "b": 2, "c": 3})
    response = patch(api, run, {"state_remove_keys": ["a", "b", "absent"], "state": {"b": "sent"}})
    assert response.status_code == 200
    assert TaskRun.objects.get(pk=run.pk).state == {"b": "sent", "c": 3}


def test_empty_string_is_a_valid_key_to_remove(api, run):
    TaskRun.objects.filter(pk=run.pk).update(state={"": 1, " a ": 2})
    assert patch(api, run, {"state_remove_keys": [""]}).status_code == 200
    assert TaskRun.objects.get(pk=run.pk).state == {" a ": 2}


def test_remove_keys_are_not_trimmed(api, run):
    TaskRun.objects.filter(pk=run.pk).update(state={"a": 1, " a ": 2})
    assert patch(api, run, {"state_remove_keys": [" a "]}).status_code == 200
    assert TaskRun.objects.get(pk=run.pk).state == {"a": 1}


@pytest.mark.parametrize("bad", [[], [1], ["a", 2], "a", [None], [["a"]], {"a": 1}])
def test_state_remove_keys_must_be_a_non_empty_list_of_strings(api, run, bad):
    TaskRun.objects.filter(pk=run.pk).update(state={"a": 1, "1": 2})
    before = stored(run)
    response = patch(api, run, {"state_remove_keys": bad})
    assert response.status_code == 400
    assert any(attr.startswith("state_remove_keys") for attr in error_codes(response))
    assert stored(run) == before


def test_output_object_is_shallow_merged(api, run):
    TaskRun.objects.filter(pk=run.pk).update(output={"pr": 1, "files": ["a"]})
    response = patch(api, run, {"output": {"files": ["b"], "summary": "done"}})
    assert response.json()["output"] == {"pr": 1, "files": ["b"], "summary": "done"}
    assert TaskRun.objects.get(pk=run.pk).output == {"pr": 1, "files": ["b"], "summary": "done"}


def test_output_object_replaces_a_stored_non_object(api, run):
    TaskRun.objects.filter(pk=run.pk).update(output=[1, 2])
    patch(api, run, {"output": {"a": 1}})
    assert TaskRun.objects.get(pk=run.pk).output == {"a": 1}


@pytest.mark.parametrize("value", [[1, 2], "text", 42, 1.5, True])
def test_output_non_object_replaces(api, run, value):
    TaskRun.objects.filter(pk=run.pk).update(output={"a": 1})
    assert patch(api, run, {"output": value}).status_code == 200
    assert TaskRun.objects.get(pk=run.pk).output == value


def test_output_null_clears(api, run):
    TaskRun.objects.filter(pk=run.pk).update(output={"a": 1})
    assert patch(api, run, {"output": None}).json()["output"] is None
    assert TaskRun.objects.get(pk=run.pk).output is None


@pytest.mark.parametrize("field", ["branch", "stage", "error_message"])
def test_text_fields_accept_text_and_null(api, run, field):
    assert patch(api, run, {field: "feature/x"}).json()[field] == "feature/x"
    assert getattr(TaskRun.objects.get(pk=run.pk), field) == "feature/x"
    assert patch(api, run, {field: None}).json()[field] is None
    assert getattr(TaskRun.objects.get(pk=run.pk), field) is None


@pytest.mark.parametrize("field", ["branch", "stage"])
def test_blank_branch_or_stage_is_rejected(api, run, field):
    before = stored(run)
    response = patch(api, run, {field: ""})
    assert response.status_code == 400 and error_codes(response) == {field: "blank"}
    assert stored(run) == before


def test_blank_error_message_is_accepted(api, run):
    assert patch(api, run, {"error_message": ""}).status_code == 200
    assert TaskRun.objects.get(pk=run.pk).error_message == ""


@pytest.mark.parametrize(("field", "limit"), [("branch", 255), ("stage", 100)])
def test_over_long_branch_or_stage_is_a_400(api, run, field, limit):
    assert patch(api, run, {field: "x" * limit}).status_code == 200
    before = stored(run)
    response = patch(api, run, {field: "x" * (limit + 1)})
    assert response.status_code == 400 and error_codes(response) == {field: "max_length"}
    assert stored(run) == before


@pytest.mark.parametrize("field", ["branch", "stage", "error_message"])
def test_numbers_are_not_coerced_to_text(api, run, field):
    response = patch(api, run, {field: 12})
    assert response.status_code == 400 and error_codes(response) == {field: "invalid"}


def test_unknown_status_is_invalid_choice(api, run):
    before = stored(run)
    response = patch(api, run, {"status": "done"})
    assert response.status_code == 400 and error_codes(response) == {"status": "invalid_choice"}
    assert stored(run) == before


def test_patch_cloud_environment_is_rejected(api, run):
    before = stored(run)
    response = patch(api, run, {"environment": "cloud"})
    assert response.status_code == 400 and error_codes(response) == {"environment": "invalid_choice"}
    assert "resume_in_cloud" in response.json()["errors"][0]["detail"]
    assert stored(run) == before


def test_local_environment_on_a_local_run_is_a_no_op(api, run):
    response = patch(api, run, {"environment": "local", "stage": "build"})
    assert response.status_code == 200
    row = TaskRun.objects.get(pk=run.pk)
    assert (row.environment, row.stage) == ("local", "build")


def test_cloud_run_hands_off_to_local(api, run):
    TaskRun.objects.filter(pk=run.pk).update(environment="cloud", status="in_progress")
    response = patch(api, run, {"environment": "local"})
    assert response.status_code == 200 and response.json()["environment"] == "local"
    row = TaskRun.objects.get(pk=run.pk)
    assert (row.environment, row.status) == ("local", "in_progress")


def test_terminal_cloud_run_cannot_change_environment(api, run):
    TaskRun.objects.filter(pk=run.pk).update(environment="cloud", status="completed")
    before = stored(run)
    response = patch(api, run, {"environment": "local"})
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"
    assert response.json()["current_status"] == "completed"
    assert stored(run) == before


def test_terminal_run_keeps_data_fields_writable(api, run):
    TaskRun.objects.filter(pk=run.pk).update(status="failed")
    body = {"state": {"k": 1}, "output": {"o": 1}, "stage": "s", "branch": "b", "error_message": "e"}
    response = patch(api, run, body)
    assert response.status_code == 200
    row = TaskRun.objects.get(pk=run.pk)
    assert (row.state, row.output, row.stage, row.branch, row.error_message) == (
        {"k": 1},
        {"o": 1},
        "s",
        "b",
        "e",
    )
    assert row.status == "failed"


def test_unknown_fields_are_ignored(api, run):
    response = patch(api, run, {"stage": "plan", "version": 999, "id": "x", "mystery": 1})
    assert response.status_code == 200
    row = TaskRun.objects.get(pk=run.pk)
    assert row.stage == "plan" and row.version == run.version + 1


def test_empty_patch_still_writes_the_row(api, run):
    response = patch(api, run, {})
    assert response.status_code == 200
    assert TaskRun.objects.get(pk=run.pk).version == run.version + 1


def test_one_bad_field_rejects_the_whole_patch(api, run):
    before = stored(run)
    response = patch(api, run, {"stage": "plan", "state": {"a": 1}, "status": "bogus"})
    assert response.status_code == 400
    assert stored(run) == before


@override_settings(TASKRUNS={"PROTECTED_STATE_KEYS": ["sandbox_id", "token"]})
@pytest.mark.parametrize(
    ("body", "attr"),
    [
        ({"state": {"sandbox_id": "x", "free": 1}}, "state"),
        ({"state_remove_keys": ["token"]}, "state_remove_keys"),
    ],
)
def test_protected_state_keys_are_rejected(api, run, body, attr):
    TaskRun.objects.filter(pk=run.pk).update(state={"sandbox_id": "s", "token": "t"})
    before = stored(run)
    response = patch(api, run, body)
    assert response.status_code == 400
    assert error_codes(response) == {attr: "protected_key"}
    assert ("sandbox_id" in response.json()["errors"][0]["detail"]) or (
        "token" in response.json()["errors"][0]["detail"]
    )
    assert stored(run) == before


@override_settings(TASKRUNS={"PROTECTED_STATE_KEYS": ["sandbox_id"]})
def test_unprotected_keys_pass_when_protection_is_on(api, run):
    assert patch(api, run, {"state": {"free": 1}}).status_code == 200
    assert TaskRun.objects.get(pk=run.pk).state == {"free": 1}


def test_get_with_json_content_type_and_no_body(api, run):
    response = api.get(run_url(run), CONTENT_TYPE="application/json")
    assert response.status_code == 200 and response.json()["id"] == str(run.pk)


@pytest.mark.parametrize("method", ["put", "delete"])
def test_runs_cannot_be_replaced_or_deleted(api, run, method):
    response = getattr(api, method)(run_url(run), {"status": "queued"}, format="json")
    assert response.status_code == 405
    assert TaskRun.objects.filter(pk=run.pk).exists()


def test_malformed_json_is_a_400_and_changes_nothing(api, run):
    before = stored(run)
    response = api.generic("PATCH", run_url(run), b'{"state": {', content_type="application/json")
    assert response.status_code == 400
    assert stored(run) == before
