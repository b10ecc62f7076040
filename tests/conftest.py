"""Shared fixtures: a member with a project, a task and a run, and API clients for them.

Every test talks to the app through HTTP (DRF's APIClient) and reads the stored row back.
"""

from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from taskruns import updates
from taskruns.keys import issue_key
from taskruns.models import Project, Task, TaskRun

FOREIGN_HOST = "tests.foreign_host.settings"
# The foreign host's own tests need its apps installed: collected only when it is the settings.
collect_ignore = [] if os.environ.get("DJANGO_SETTINGS_MODULE") == FOREIGN_HOST else ["foreign_host"]


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
def admin_client(client, db):
    """A browser session of a superuser, for the admin."""
    get_user_model().objects.create_superuser("boss", password="pw")
    client.login(username="boss", password="pw")
    return client


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


def mount() -> str:
    """Where the settings' URLconf mounts the app: "/api/" in the demo, "/v1/" in the foreign host."""
    return reverse("taskruns:task-list", kwargs={"project_id": "0"}).removesuffix("projects/0/tasks/")


def run_url(run: TaskRun, action: str = "") -> str:
    base = f"{mount()}projects/{run.project_id}/tasks/{run.task_id}/runs/{run.pk}/"
    return f"{base}{action}/" if action else base


def runs_url(task: Task) -> str:
    return f"{mount()}projects/{task.project_id}/tasks/{task.pk}/runs/"


def tasks_url(project_id: int) -> str:
    return f"{mount()}projects/{project_id}/tasks/"


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


@pytest.fixture(autouse=True)
def fresh_request_rates():
    """Each test starts with no requests counted against any rate (taskruns.throttling): the
    counts live in a cache that outlasts a test, and key and user ids repeat between tests."""
    from django.core.cache import caches

    from taskruns.conf import app_settings

    caches[app_settings.THROTTLE_CACHE].clear()


@pytest.fixture
def page(monkeypatch):
    """A fresh page at 1280 × 900; ``page.outside`` lists the requests that left the machine
    (a request the page's Content-Security-Policy stopped was never sent and is not listed)."""
    from playwright.sync_api import sync_playwright

    from .browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, leaves_the_machine

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # around it are plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            sent: list[str] = []
            blocked: set[str] = set()
            page.on("request", lambda request: sent.append(request.url))
            page.on(
                "requestfailed",
                lambda request: blocked.add(request.url) if request.failure == "csp" else None,
            )
            page.outside = lambda: [url for url in sent if leaves_the_machine(url) and url not in blocked]
            yield page
        finally:
            browser.close()
            # The ORM calls made while Playwright runs get their own connection (Playwright's
            # greenlet has its own context); close it so the test database can be dropped.
            connections.close_all()
