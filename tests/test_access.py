"""Authentication and project scoping (design §2): 401 with WWW-Authenticate, 404 out of scope."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from taskruns.access import ProjectMembershipPolicy
from taskruns.keys import hash_key, issue_key, revoke
from taskruns.models import ApiKey, Project, Task, TaskRun

from .conftest import bearer, mount, run_url, runs_url, stored, tasks_url


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer trk_wrongwrongwrongwrongwrongwrongwrongwrongwro",
        "Bearer",
        "Bearer a b",
        "Bearer nottrk",
        "Bearer \u00e9t\u00e9",
    ],
)
def test_missing_or_bad_credentials_are_a_401_with_www_authenticate(run, authorization):
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization.encode("utf-8").decode("latin-1"))
    response = client.get(run_url(run))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_patch_without_credentials_changes_nothing(run):
    before = stored(run)
    response = APIClient().patch(run_url(run), {"stage": "x"}, format="json")
    assert response.status_code == 401
    assert stored(run) == before


def test_a_revoked_key_is_a_401(run, user):
    api_key, raw = issue_key(user, "soon revoked")
    assert bearer(raw).get(run_url(run)).status_code == 200
    revoke(ApiKey.objects.filter(pk=api_key.pk))
    assert bearer(raw).get(run_url(run)).status_code == 401


def test_a_key_of_an_inactive_user_is_a_401(run, user, raw_key):
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    assert bearer(raw_key).get(run_url(run)).status_code == 401


def test_keys_are_stored_only_as_a_hash(user):
    api_key, raw = issue_key(user, "k")
    row = ApiKey.objects.filter(pk=api_key.pk).values().get()
    assert raw not in {str(v) for v in row.values()}
    assert row["key_hash"] == hash_key(raw)


def test_authenticating_records_last_use(run, user):
    api_key, raw = issue_key(user, "k")
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at is None
    bearer(raw).get(run_url(run))
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at is not None


@pytest.fixture
def other_project(db):
    stranger = get_user_model().objects.create_user("stranger")
    project = Project.objects.create(name="Other")
    project.members.add(stranger)
    task = Task.objects.create(project=project, title="Not yours")
    run = TaskRun.objects.create(task=task, project=project)
    return project, task, run


def routes(project_id, task_id, run_id):
    runs = f"{mount()}projects/{project_id}/tasks/{task_id}/runs/"
    return [
        ("get", f"{mount()}projects/{project_id}/tasks/", None),
        ("post", f"{mount()}projects/{project_id}/tasks/", {"title": "x"}),
        ("get", f"{mount()}projects/{project_id}/tasks/{task_id}/", None),
        ("patch", f"{mount()}projects/{project_id}/tasks/{task_id}/", {"title": "x"}),
        ("delete", f"{mount()}projects/{project_id}/tasks/{task_id}/", None),
        ("get", runs, None),
        ("post", runs, {}),
        ("get", f"{runs}{run_id}/", None),
        ("patch", f"{runs}{run_id}/", {"stage": "x"}),
        ("post", f"{runs}{run_id}/resume_in_cloud/", None),
    ]


@pytest.mark.parametrize("index", range(10))
def test_another_projects_rows_are_404_on_every_route(api, other_project, index):
    project, task, run = other_project
    method, url, body = routes(project.pk, task.pk, run.pk)[index]
    before_run, before_task = stored(run), Task.objects.filter(pk=task.pk).values().get()
    response = getattr(api, method)(url, body, format="json")
    assert response.status_code == 404
    assert stored(run) == before_run
    assert Task.objects.filter(pk=task.pk).values().get() == before_task
    assert Task.objects.filter(project=project).count() == 1


@pytest.mark.parametrize("index", range(10))
def test_a_key_limited_to_another_project_sees_404(run, user, index):
    elsewhere = Project.objects.create(name="Elsewhere")
    elsewhere.members.add(user)
    _, raw = issue_key(user, "limited", projects=[elsewhere])
    method, url, body = routes(run.project_id, run.task_id, run.pk)[index]
    before = stored(run)
    response = getattr(bearer(raw), method)(url, body, format="json")
    assert response.status_code == 404
    assert stored(run) == before


def test_a_key_limited_to_the_project_works(run, user):
    _, raw = issue_key(user, "limited", projects=[run.project])
    assert bearer(raw).get(run_url(run)).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "{api}projects/1/tasks/not-a-uuid/",
        "{api}projects/1/tasks/not-a-uuid/runs/",
        "{api}projects/99999999999999999999999/tasks/",
        "{api}projects/{project}/tasks/{task}/runs/not-a-uuid/",
        "{api}projects/{project}/tasks/{task}/runs/{random}/",
        "{api}projects/{project}/tasks/{random}/runs/{run}/",
    ],
)
def test_malformed_or_unknown_ids_are_404(api, run, url):
    url = url.format(api=mount(), project=run.project_id, task=run.task_id, run=run.pk, random=uuid.uuid4())
    assert api.get(url).status_code == 404
    assert api.patch(url, {"stage": "x"}, format="json").status_code in (404, 405)


def test_a_run_is_not_reachable_through_another_task(api, run, task):
    sibling = Task.objects.create(project=task.project, title="Sibling")
    assert api.get(f"{runs_url(sibling)}{run.pk}/").status_code == 404


def test_session_login_drives_the_api_and_needs_csrf_for_writes(run, user):
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="member", password="pw")
    assert client.get(run_url(run)).status_code == 200
    response = client.patch(run_url(run), {"stage": "x"}, format="json")
    assert response.status_code == 403
    assert TaskRun.objects.get(pk=run.pk).stage is None


def test_session_user_outside_the_project_gets_404(run):
    get_user_model().objects.create_user("outsider", password="pw")
    client = APIClient()
    client.login(username="outsider", password="pw")
    assert client.get(run_url(run)).status_code == 404
    assert client.get(tasks_url(run.project_id)).status_code == 404


class MembershipPolicyOfAnotherClass(ProjectMembershipPolicy):
    """The default rules in a policy of another class: RunScope.sql writes them inline (on
    PostgreSQL the default policy's class is checked by the function of migration 0005)."""


@pytest.mark.parametrize(
    "policy", ["taskruns.access.ProjectMembershipPolicy", f"{__name__}.MembershipPolicyOfAnotherClass"]
)
@pytest.mark.parametrize(
    "caller", ["member", "outsider", "anonymous", "key", "key_elsewhere", "key_here", "deleted"]
)
def test_run_scope_sql_selects_the_same_runs_as_its_queryset(run, user, caller, policy, settings):
    """The one-statement PATCH uses RunScope.sql, reads use RunScope.runs(): same rows."""
    settings.TASKRUNS = {**settings.TASKRUNS, "ACCESS_POLICY": policy}
    from django.contrib.auth.models import AnonymousUser
    from django.db import connection

    from taskruns.access import RunScope

    TaskRun.objects.create(task=run.task, project=run.project)  # a second run in scope
    other_task = Task.objects.create(project=run.project, title="other")
    TaskRun.objects.create(task=other_task, project=run.project)  # same project, other task
    elsewhere = Project.objects.create(name="Elsewhere")
    elsewhere.members.add(user)
    auth, who = None, user
    if caller == "outsider":
        who = get_user_model().objects.create_user("outsider")
    elif caller == "anonymous":
        who = AnonymousUser()
    elif caller.startswith("key"):
        limited = {"key": [], "key_elsewhere": [elsewhere], "key_here": [run.project]}[caller]
        auth = issue_key(user, caller, projects=limited)[0]
    elif caller == "deleted":
        Task.objects.filter(pk=run.task_id).update(deleted_at="2026-01-01T00:00:00Z")

    class Request:
        pass

    request = Request()
    request.user, request.auth = who, auth
    scope = RunScope(request, run.project_id, run.task_id)
    sql, params = scope.sql("run", "default")
    assert ("taskruns_may_reach(" in sql) == (connection.vendor == "postgresql" and "Another" not in policy)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {TaskRun._meta.db_table} AS run WHERE {sql}", params)
        by_sql = {uuid.UUID(str(row[0])) for row in cursor.fetchall()}
    by_queryset = set(scope.runs().values_list("pk", flat=True))
    assert by_sql == by_queryset
    expected = 2 if caller in ("member", "key", "key_here") else 0
    assert len(by_queryset) == expected


@pytest.mark.parametrize(
    "path",
    [
        "{api}projects/%C2%84/tasks/",  # found by the schema fuzzer: was Django's HTML 404
        "{api}projects/abc/tasks/",
        "{api}projects/%D9%A3/tasks/",  # an Arabic-Indic digit, which int() would accept
        "{api}projects/-1/tasks/",
        "{api}projects/{project}/tasks/a.b/",
        "{api}projects/{project}/tasks/{task}/runs/a.b/",
        "{api}projects/{project}/tasks/{task}/runs/a.b/logs",
    ],
)
def test_malformed_ids_and_unknown_api_urls_are_json_404s(api, run, path):
    response = api.get(path.format(api=mount(), project=run.project_id, task=run.task_id))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["errors"][0]["code"] == "not_found"


@pytest.mark.urls("config.urls")
def test_unknown_urls_under_the_demos_api_are_json_404s(api, run):
    """The demo project's own 404 handler (config/urls.py): a URL no route matches is JSON too.
    A host's unmatched URLs are the host's business, so this is the demo's URLconf."""
    response = api.get(f"/api/projects/{run.project_id}/nothing-here/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["errors"][0]["code"] == "not_found"


@pytest.mark.urls("config.urls")
@pytest.mark.parametrize("method", ["get", "patch", "post", "delete"])
def test_the_demos_api_answers_json_404s_with_debug_on_too(api, run, settings, method):
    """Django ignores handler404 under DEBUG; the demo's catch-all under /api/ does not."""
    settings.DEBUG = True
    for path in (f"/api/projects/{run.project_id}/nothing-here/", f"/api/projects/{run.project_id}/nothing"):
        response = getattr(api, method)(path, {"state": {"a": 1}} if method == "patch" else None)
        assert response.status_code == 404, (method, path)
        assert response["Content-Type"] == "application/json"
        assert response.json()["errors"][0]["code"] == "not_found"
    assert stored(run)["state"] == {}


def test_the_api_root_lists_the_projects_the_caller_can_see(api, project, db):
    hidden = Project.objects.create(name="not yours")
    hidden.members.add(get_user_model().objects.create_user("someone else"))
    for url in (mount(), f"{mount()}projects/"):
        response = api.get(url)
        assert response.status_code == 200, url
        results = response.json()["results"]
        assert [item["id"] for item in results] == [project.pk]
        assert results[0]["tasks_url"].endswith(f"{mount()}projects/{project.pk}/tasks/")
        assert results[0]["runs_url"].endswith(f"{mount()}projects/{project.pk}/runs/")
    assert APIClient().get(mount()).status_code == 401


@pytest.mark.parametrize("settings_debug", [False, True])
def test_every_route_answers_without_its_trailing_slash_too(api, run, settings, settings_debug):
    """A PATCH cannot follow a redirect: a run's URL without its slash is served directly (it was
    an HTML 500, then a JSON 404), and reverse() still gives the slashed URL."""
    settings.DEBUG = settings_debug
    unslashed = run_url(run).rstrip("/")
    response = api.patch(unslashed, {"state": {"via": "no slash"}}, format="json")
    assert response.status_code == 200, response.content
    assert stored(run)["state"] == {"via": "no slash"}
    assert api.get(runs_url(run.task).rstrip("/")).json()["count"] == 1
    assert api.post(f"{run_url(run)}heartbeat", {}, format="json").status_code == 409  # queued
    assert run.get_absolute_url().endswith("/")
    assert APIClient().get(unslashed).status_code == 401
