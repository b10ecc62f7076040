"""Isolation matrix: every route and method × every kind of caller, each with its status.

Callers: anonymous, a bad key, a revoked key, a key limited to another project, a member of
another project, and a member. Nothing is readable or changeable across projects, and a caller
who may not see the project gets 404 (never 403), so existence does not leak.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from taskruns import updates
from taskruns.keys import issue_key, revoke
from taskruns.models import ApiKey, Project, Task, TaskRun, TaskRunEvent, TaskRunLogEntry

from .conftest import mount

ROUTES = [
    # (method, path template, body, member's status)
    ("get", "tasks/", None, 200),
    ("post", "tasks/", {"title": "new"}, 201),
    ("get", "tasks/{task}/", None, 200),
    ("patch", "tasks/{task}/", {"title": "renamed"}, 200),
    ("delete", "tasks/{task}/", None, 204),
    ("put", "tasks/{task}/", {"title": "x"}, 405),
    ("get", "tasks/{task}/runs/", None, 200),
    ("post", "tasks/{task}/runs/", {}, 201),
    ("get", "tasks/{task}/runs/{run}/", None, 200),
    ("patch", "tasks/{task}/runs/{run}/", {"state": {"x": 1}}, 200),
    ("put", "tasks/{task}/runs/{run}/", {"status": "queued"}, 405),
    ("delete", "tasks/{task}/runs/{run}/", None, 405),
    ("post", "tasks/{task}/runs/{run}/resume_in_cloud/", None, 200),
    ("patch", "tasks/{task}/runs/{run}/set_output/", {"output": {"o": 1}}, 200),
    ("post", "tasks/{task}/runs/{run}/append_log/", {"entries": [{"e": 1}]}, 200),
    ("get", "tasks/{task}/runs/{run}/logs", None, 200),
    ("get", "tasks/{task}/runs/{run}/logs/", None, 200),
    ("get", "tasks/{task}/runs/{run}/events/", None, 200),
]
CALLERS = [
    "anonymous",
    "bad key",
    "revoked key",
    "key for another project",
    "member of another project",
    "member",
]


@pytest.fixture
def world(db):
    """Two projects, each with a member, a task, a run (with a log), and keys of every kind."""
    User = get_user_model()
    member, stranger = User.objects.create_user("member"), User.objects.create_user("stranger")
    ours, theirs = Project.objects.create(name="ours"), Project.objects.create(name="theirs")
    ours.members.add(member)
    theirs.members.add(stranger, member)
    task = Task.objects.create(project=ours, title="secret task")
    run = updates.create_run(task)
    updates.append_log(run, [{"secret": "log"}])
    revoked_key, revoked = issue_key(member, "revoked")
    revoke(ApiKey.objects.filter(pk=revoked_key.pk))
    keys = {
        "anonymous": None,
        "bad key": "trk_" + "x" * 43,
        "revoked key": revoked,
        "key for another project": issue_key(member, "elsewhere", projects=[theirs])[1],
        "member of another project": issue_key(stranger, "stranger")[1],
        "member": issue_key(member, "member")[1],
    }
    return {"project": ours, "task": task, "run": run, "keys": keys}


def state_of_everything() -> list:
    return [
        list(model.objects.order_by("pk").values())
        for model in (Project, Task, TaskRun, TaskRunEvent, TaskRunLogEntry)
    ]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    ("method", "path", "body", "member_status"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES]
)
def test_matrix(world, caller, method, path, body, member_status):
    client = APIClient()
    if world["keys"][caller]:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {world['keys'][caller]}")
    url = f"{mount()}projects/{world['project'].pk}/" + path.format(
        task=world["task"].pk, run=world["run"].pk
    )
    before = state_of_everything()
    response = getattr(client, method)(url, body, format="json")

    if caller in ("anonymous", "bad key", "revoked key"):
        expected = 401
    elif caller in ("key for another project", "member of another project"):
        expected = 405 if member_status == 405 else 404
    else:
        expected = member_status
    assert response.status_code == expected, (caller, response.content[:300])
    if expected == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")
    if caller != "member":
        assert state_of_everything() == before  # nothing changed
        content = b"".join(response.streaming_content) if response.streaming else response.content
        for secret in (b"secret", str(world["run"].pk).encode(), str(world["task"].pk).encode()):
            assert secret not in content  # nothing readable
