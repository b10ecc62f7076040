"""POST …/runs/{id}/resume_in_cloud/ (design §6)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from taskruns.models import TaskRun

from .conftest import run_url, stored

STARTED: list = []


def recording_starter(run):
    STARTED.append((run.pk, run.status, run.environment))


def failing_starter(run):
    raise RuntimeError("cloud is down")


@pytest.fixture(autouse=True)
def clear_started():
    STARTED.clear()


def resume(api, run):
    return api.post(run_url(run, "resume_in_cloud"), format="json")


@pytest.mark.parametrize(
    ("status", "environment"),
    [
        ("completed", "local"),
        ("failed", "cloud"),
        ("cancelled", "local"),
        ("in_progress", "local"),
        ("not_started", "cloud"),
    ],
)
@override_settings(
    TASKRUNS={"CLOUD_STARTER": "tests.test_resume.recording_starter", "RESUME_CLEAR_STATE_KEYS": ["sandbox"]}
)
def test_resume_moves_the_run_into_cloud_as_queued(api, run, status, environment):
    TaskRun.objects.filter(pk=run.pk).update(
        status=status, environment=environment, error_message="boom", state={"sandbox": "x", "keep": 1}
    )
    if status in ("completed", "failed", "cancelled"):
        TaskRun.objects.filter(pk=run.pk).update(completed_at="2026-01-01T00:00:00Z")
    before = stored(run)
    response = resume(api, run)
    assert response.status_code == 200, response.content
    row = TaskRun.objects.get(pk=run.pk)
    assert (row.status, row.environment, row.completed_at, row.error_message) == (
        "queued",
        "cloud",
        None,
        None,
    )
    assert row.state == {"keep": 1}
    assert row.version == before["version"] + 1
    assert response.json()["status"] == "queued" and response.json()["environment"] == "cloud"
    assert STARTED == [(run.pk, "queued", "cloud")]


@pytest.mark.parametrize("status", ["queued", "in_progress"])
def test_resume_of_a_run_already_active_in_cloud_is_a_409(api, run, status):
    TaskRun.objects.filter(pk=run.pk).update(status=status, environment="cloud")
    before = stored(run)
    response = resume(api, run)
    assert response.status_code == 409
    assert response.json()["code"] == "already_active_in_cloud"
    assert response.json()["errors"][0]["detail"] == "Run is already active in cloud"
    assert response.json()["current_status"] == status
    assert stored(run) == before


@override_settings(
    TASKRUNS={"CLOUD_STARTER": "tests.test_resume.failing_starter", "RESUME_CLEAR_STATE_KEYS": ["s"]}
)
def test_a_failing_cloud_starter_rolls_everything_back(api, run):
    TaskRun.objects.filter(pk=run.pk).update(status="failed", error_message="boom", state={"s": 1})
    before = stored(run)
    # The demo's error handler reports 5xx answers through got_request_exception, which the
    # test client would otherwise re-raise; a real client just gets the 502.
    api.raise_request_exception = False
    response = resume(api, run)
    assert response.status_code == 502
    assert response.json()["code"] == "cloud_start_failed"
    assert response.json()["errors"][0]["detail"] == "Failed to start cloud workflow"
    assert stored(run) == before


def test_resume_with_no_starter_configured_still_resumes(api, run):
    TaskRun.objects.filter(pk=run.pk).update(status="completed")
    assert resume(api, run).status_code == 200
    assert TaskRun.objects.get(pk=run.pk).status == "queued"


def test_a_resumed_run_can_be_handed_back_to_local(api, run):
    resume(api, run)
    response = api.patch(run_url(run), {"environment": "local"}, format="json")
    assert response.status_code == 200
    assert TaskRun.objects.get(pk=run.pk).environment == "local"
