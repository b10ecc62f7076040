"""Shared fixtures: a member with a project, a task and a run, and API clients for them.

Every test talks to the app through HTTP (DRF's APIClient) and reads the stored row back.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from taskruns import updates
from taskruns.keys import issue_key
from taskruns.models import Project, Task, TaskRun


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("member", password="pw")


@pytest.fixture
def project(user):
    project = Project.objects.create(name="Acme")
    project.members.add(user)
    return project


@pytest.fixture
def task(project, user):
    return Task.objects.create(project=project, title="Fix the flaky test", created_by=user)


@pytest.fixture
def run(task) -> TaskRun:
    return updates.create_run(task)


@pytest.fixture
def raw_key(user) -> str:
    return issue_key(user, "test key")[1]


@pytest.fixture
def api(raw_key) -> APIClient:
    """A client authenticated with the member's Bearer key, sending JSON."""
    return bearer(raw_key)


def bearer(raw_key: str) -> APIClient:
    """A client sending ``Authorization: Bearer <raw_key>`` and JSON bodies."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    client.default_format = "json"
    return client


def run_url(run: TaskRun, action: str = "") -> str:
    base = f"/api/projects/{run.project_id}/tasks/{run.task_id}/runs/{run.pk}/"
    return f"{base}{action}/" if action else base


def runs_url(task: Task) -> str:
    return f"/api/projects/{task.project_id}/tasks/{task.pk}/runs/"


def tasks_url(project_id: int) -> str:
    return f"/api/projects/{project_id}/tasks/"


def error_codes(response) -> dict:
    """{attr: code} of an error body rendered by drf-standardized-errors (the demo's handler)."""
    return {error["attr"]: error["code"] for error in response.json()["errors"]}


def statements_of(call) -> tuple[object, list[str]]:
    """The result of ``call()`` and the SQL of every statement Django sent while making it."""
    with CaptureQueriesContext(connection) as captured:
        response = call()
    return response, [query["sql"] for query in captured.captured_queries]


def stored(run: TaskRun) -> dict:
    """Every column of the run as stored now, for "unchanged after a rejection" checks."""
    return TaskRun.objects.filter(pk=run.pk).values().get()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """PBKDF2's deliberate slowness only slows the suite down."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
