"""Tasks and run creation/listing (design §1): create, edit, soft delete, pagination."""

from __future__ import annotations

import pytest

from taskruns.models import Task, TaskRun

from .conftest import error_codes, run_url, runs_url, tasks_url


def test_create_task_sets_project_and_creator(api, project, user):
    response = api.post(
        tasks_url(project.pk), {"title": "Add dark mode", "repository": "acme/web"}, format="json"
    )
    assert response.status_code == 201
    task = Task.objects.get(pk=response.json()["id"])
    assert (task.project_id, task.created_by_id, task.title) == (project.pk, user.pk, "Add dark mode")


def test_task_needs_a_title(api, project):
    response = api.post(tasks_url(project.pk), {"description": "no title"}, format="json")
    assert response.status_code == 400 and error_codes(response) == {"title": "required"}
    assert not Task.objects.exists()


@pytest.mark.parametrize("schema", [{"type": "nonsense"}, [1], "object"])
def test_task_json_schema_must_be_a_valid_schema(api, project, schema):
    response = api.post(tasks_url(project.pk), {"title": "t", "json_schema": schema}, format="json")
    assert response.status_code == 400 and "json_schema" in error_codes(response)
    assert not Task.objects.exists()


def test_task_patch_edits_fields(api, task):
    response = api.patch(f"{tasks_url(task.project_id)}{task.pk}/", {"description": "new"}, format="json")
    assert response.status_code == 200
    assert Task.objects.get(pk=task.pk).description == "new"


def test_task_put_is_not_allowed(api, task):
    assert (
        api.put(f"{tasks_url(task.project_id)}{task.pk}/", {"title": "x"}, format="json").status_code == 405
    )


def test_delete_soft_deletes_the_task_and_keeps_its_runs(api, task, run):
    url = f"{tasks_url(task.project_id)}{task.pk}/"
    assert api.delete(url).status_code == 204
    assert Task.objects.get(pk=task.pk).deleted_at is not None
    assert TaskRun.objects.filter(pk=run.pk).exists()
    assert api.get(url).status_code == 404
    assert api.get(run_url(run)).status_code == 404
    assert api.get(runs_url(task)).status_code == 404
    assert api.patch(run_url(run), {"stage": "x"}, format="json").status_code == 404
    assert api.get(tasks_url(task.project_id)).json()["count"] == 0


def test_create_run_defaults_to_queued_and_local(api, task):
    response = api.post(runs_url(task), {}, format="json")
    assert response.status_code == 201
    run = TaskRun.objects.get(pk=response.json()["id"])
    assert (run.status, run.environment, run.state, run.version, run.project_id) == (
        "queued",
        "local",
        {},
        1,
        task.project_id,
    )


def test_create_run_with_environment_and_status(api, task):
    response = api.post(runs_url(task), {"environment": "cloud", "status": "not_started"}, format="json")
    assert response.status_code == 201
    run = TaskRun.objects.get(pk=response.json()["id"])
    assert (run.status, run.environment) == ("not_started", "cloud")


@pytest.mark.parametrize(
    ("body", "attr"), [({"status": "in_progress"}, "status"), ({"environment": "moon"}, "environment")]
)
def test_create_run_rejects_other_starting_points(api, task, body, attr):
    response = api.post(runs_url(task), body, format="json")
    assert response.status_code == 400 and error_codes(response) == {attr: "invalid_choice"}
    assert not TaskRun.objects.exists()


def test_create_run_keeps_branch_stage_and_state(api, task):
    body = {"branch": "fix/flaky", "stage": "plan", "state": {"sandbox_url": "http://x", "n": 1}}
    response = api.post(runs_url(task), body, format="json")
    assert response.status_code == 201
    assert {key: response.json()[key] for key in body} == body
    run = TaskRun.objects.get(pk=response.json()["id"])
    assert (run.branch, run.stage, run.state, run.version) == ("fix/flaky", "plan", body["state"], 1)


@pytest.mark.parametrize(
    ("body", "settings_", "status", "codes"),
    [
        ({"state": [1]}, {}, 400, {"state": "not_an_object"}),
        ({"state": {"secret": 1}}, {"PROTECTED_STATE_KEYS": ["secret"]}, 400, {"state": "protected_key"}),
        (
            {"state": {"a": 1, "b": 2}},
            {"MAX_STATE_KEYS_PER_PATCH": 1},
            400,
            {"non_field_errors": "too_many_keys"},
        ),
        ({"state": {"a": "x" * 100}}, {"MAX_STATE_BYTES": 50}, 413, {None: "state_too_large"}),
        ({"branch": "b" * 256}, {}, 400, {"branch": "max_length"}),
    ],
)
def test_create_run_refuses_a_state_or_field_a_patch_would_refuse(
    api, task, settings, body, settings_, status, codes
):
    settings.TASKRUNS = {**getattr(settings, "TASKRUNS", {}), **settings_}
    response = api.post(runs_url(task), body, format="json")
    assert response.status_code == status and error_codes(response) == codes, response.content
    assert not TaskRun.objects.exists()


def test_run_list_is_newest_first_and_paginated(api, task):
    ids = [api.post(runs_url(task), {}, format="json").json()["id"] for _ in range(3)]
    page = api.get(runs_url(task), {"limit": 2}).json()
    assert page["count"] == 3
    assert [r["id"] for r in page["results"]] == ids[::-1][:2]
    assert page["next"] is not None and page["previous"] is None
    rest = api.get(page["next"]).json()
    assert [r["id"] for r in rest["results"]] == ids[::-1][2:]


def test_list_pages_default_to_50_and_cap_at_100(api, task):
    TaskRun.objects.bulk_create([TaskRun(task=task, project_id=task.project_id) for _ in range(120)])
    assert len(api.get(runs_url(task)).json()["results"]) == 50
    assert len(api.get(runs_url(task), {"limit": 500}).json()["results"]) == 100


def test_task_list_is_newest_first(api, project):
    first = api.post(tasks_url(project.pk), {"title": "one"}, format="json").json()["id"]
    second = api.post(tasks_url(project.pk), {"title": "two"}, format="json").json()["id"]
    assert [t["id"] for t in api.get(tasks_url(project.pk)).json()["results"]] == [second, first]
