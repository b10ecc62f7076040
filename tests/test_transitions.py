"""Status transitions (design §5), checked for every pair through PATCH."""

from __future__ import annotations

import itertools

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from taskruns.models import TaskRun, TaskRunStatus
from taskruns.transitions import DEFAULT_TRANSITIONS

from .conftest import run_url, stored

STATUSES = TaskRunStatus.values
TERMINAL = {"completed", "failed", "cancelled"}
# The table of design §5, written out independently of taskruns.transitions.
ALLOWED = {
    "not_started": {"queued", "in_progress", "completed", "failed", "cancelled"},
    "queued": {"in_progress", "completed", "failed", "cancelled"},
    "in_progress": {"queued", "completed", "failed", "cancelled"},
    "completed": set(),
    "failed": set(),
    "cancelled": set(),
}


def test_default_table_matches_the_design():
    assert {k: set(v) for k, v in DEFAULT_TRANSITIONS.items()} == ALLOWED


@pytest.mark.parametrize(("current", "target"), list(itertools.product(STATUSES, STATUSES)))
def test_every_status_pair(api, run, current, target):
    TaskRun.objects.filter(pk=run.pk).update(status=current)
    before = stored(run)
    response = api.patch(run_url(run), {"status": target}, format="json")
    row = stored(run)
    if target == current or target in ALLOWED[current]:
        assert response.status_code == 200, response.content
        assert row["status"] == target and row["version"] == before["version"] + 1
    else:
        assert response.status_code == 409
        body = response.json()
        assert body["code"] == "invalid_transition"
        assert body["errors"][0]["code"] == "invalid_transition"
        assert body["current_status"] == current
        assert body["allowed_statuses"] == [s for s in STATUSES if s in ALLOWED[current]]
        assert row == before


def test_a_cancelled_run_cannot_be_resurrected_by_a_stale_agent(api, run):
    api.patch(run_url(run), {"status": "cancelled"}, format="json")
    response = api.patch(run_url(run), {"status": "in_progress", "state": {"late": True}}, format="json")
    assert response.status_code == 409
    row = TaskRun.objects.get(pk=run.pk)
    assert row.status == "cancelled" and "late" not in row.state


def test_started_at_is_set_the_first_time_only(api, run):
    api.patch(run_url(run), {"status": "in_progress"}, format="json")
    first = TaskRun.objects.get(pk=run.pk).started_at
    assert first is not None
    api.patch(run_url(run), {"status": "queued"}, format="json")
    api.patch(run_url(run), {"status": "in_progress"}, format="json")
    assert TaskRun.objects.get(pk=run.pk).started_at == first


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_completed_at_is_set_on_entering_a_terminal_status(api, run, terminal):
    assert TaskRun.objects.get(pk=run.pk).completed_at is None
    response = api.patch(run_url(run), {"status": terminal}, format="json")
    row = TaskRun.objects.get(pk=run.pk)
    assert row.completed_at is not None
    assert response.json()["completed_at"] is not None
    # Writing the same terminal status again is a no-op: completed_at is set once.
    api.patch(run_url(run), {"status": terminal}, format="json")
    assert TaskRun.objects.get(pk=run.pk).completed_at == row.completed_at


@override_settings(TASKRUNS={"TRANSITIONS": {**{k: sorted(v) for k, v in ALLOWED.items()}, "queued": []}})
def test_a_host_can_replace_the_table(api, run):
    response = api.patch(run_url(run), {"status": "in_progress"}, format="json")
    assert response.status_code == 409 and response.json()["allowed_statuses"] == []


@pytest.mark.parametrize(
    "table",
    [
        "not a dict",
        {"queued": ["in_progress"]},  # rows missing
        {**{k: sorted(v) for k, v in ALLOWED.items()}, "completed": ["queued"]},  # terminal exit
        {**{k: sorted(v) for k, v in ALLOWED.items()}, "queued": ["done"]},  # unknown target
        {**{k: sorted(v) for k, v in ALLOWED.items()}, "paused": []},  # unknown source
    ],
)
@pytest.mark.django_db  # Django 6.1's check command may also ask the database
def test_a_bad_table_is_a_system_check_error(table):
    with (
        override_settings(TASKRUNS={"TRANSITIONS": table}),
        pytest.raises(SystemCheckError, match="taskruns.E002"),
    ):
        call_command("check")
