"""The schema's examples are a real run through the API (taskruns/openapi_examples.json).

The scenario below drives a task and its run from creation to completion, a hand-off, a resume
in cloud, and the errors a client meets on the way. `make examples` records what it sends and
what the API answers into the examples file; on every test run it is replayed and must get the
same answers (ids, times and key prefixes aside), so the examples cannot drift from the API.
Each recorded answer is also validated against the response schema of its operation.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.core.management import call_command
from openapi_schema_validator import OAS30Validator
from rest_framework.test import APIClient

from taskruns.keys import issue_key
from taskruns.models import Project
from taskruns.openapi_examples import EXAMPLES_FILE

from .conftest import mount

pytestmark = pytest.mark.django_db
RECORD = os.environ.get("TASKRUNS_RECORD_EXAMPLES") == "1"
HOST = "127.0.0.1:8000"


class Recorder:
    """Sends requests as a client would and keeps each one as a named example of its operation."""

    def __init__(self, client: APIClient) -> None:
        self.client = client
        self.examples: dict[str, Any] = {}

    def send(
        self, operation: str, name: str, summary: str, method: str, url: str, body: Any = None, **headers
    ):
        kwargs: dict[str, Any] = {"HTTP_HOST": HOST, **headers}
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type="application/json")
        response = getattr(self.client, method)(url, **kwargs)
        entry = self.examples.setdefault(operation, {})
        if body is not None:
            entry.setdefault("request", {})[name] = {"summary": summary, "value": body}
        if response.content:
            answers = entry.setdefault("responses", {}).setdefault(str(response.status_code), {})
            answers[name] = {"summary": summary, "value": response.json()}
        return response


def scenario(recorder: Recorder, project: Project, raw_key: str) -> None:
    send = recorder.send
    key = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}
    tasks = f"{mount()}projects/{project.pk}/tasks/"
    task = send(
        "tasks_create",
        "create",
        "A task with no output schema",
        "post",
        tasks,
        {
            "title": "Fix the flaky checkout test",
            "description": "tests/test_checkout.py fails one run in ten on CI.",
            "repository": "acme/shop",
        },
        **key,
    ).json()
    runs = f"{tasks}{task['id']}/runs/"
    run = send(
        "tasks_runs_create",
        "cloud",
        "A run that starts queued in cloud, with its sandbox in the state",
        "post",
        runs,
        {
            "environment": "cloud",
            "branch": "fix/flaky-checkout",
            "stage": "research",
            "state": {"sandbox": "sb-4f2a"},
        },
        **key,
    ).json()
    url = f"{runs}{run['id']}/"
    patch = "tasks_runs_partial_update"
    send(
        patch,
        "start",
        "The agent starts: status, stage and state in one write",
        "patch",
        url,
        {"status": "in_progress", "stage": "plan", "state": {"plan": "retry the payment mock", "step": 1}},
        **key,
    )
    send(
        "tasks_runs_heartbeat_create",
        "alive",
        "The executor is alive and need not stop",
        "post",
        f"{url}heartbeat/",
        **key,
    )
    send(
        "tasks_runs_append_log_create",
        "entries",
        "Two log entries, kept in order",
        "post",
        f"{url}append_log/",
        {
            "entries": [
                {"type": "notification", "message": "Running tests"},
                {"type": "tool_call", "tool": "pytest", "exit_code": 1},
            ]
        },
        **key,
    )
    send(
        patch,
        "remove-merge-append",
        "Remove a key, merge one, append to a list (state_append)",
        "patch",
        url,
        {
            "state_remove_keys": ["step"],
            "state": {"failing_tests": 1},
            "state_append": {"gateway_request_ids": "req_01HZX4"},
        },
        **key,
    )
    send(
        patch,
        "hand-off",
        "Hand the cloud run to a local machine",
        "patch",
        url,
        {"environment": "local"},
        **key,
    )
    send(patch, "not-an-object", "Refused: state must be an object", "patch", url, {"state": ["plan"]}, **key)
    send(
        patch,
        "stale-if-match",
        "Refused: If-Match names an older version",
        "patch",
        url,
        {"stage": "build"},
        HTTP_IF_MATCH='"2"',
        **key,
    )
    send(
        patch,
        "complete",
        "The run ends with its output",
        "patch",
        url,
        {
            "status": "completed",
            "output": {"pr_url": "https://github.com/acme/shop/pull/42", "tests_passed": True},
        },
        **key,
    )
    send(
        patch,
        "finished",
        "Refused: a completed run's status is final",
        "patch",
        url,
        {"status": "in_progress"},
        **key,
    )
    send("tasks_runs_retrieve", "completed", "A completed run", "get", url, **key)
    send("tasks_runs_retrieve", "no-credentials", "Refused: no credentials", "get", url)
    send(
        "tasks_runs_retrieve",
        "unknown",
        "Refused: no such run, or not yours",
        "get",
        f"{runs}00000000-0000-4000-8000-000000000000/",
        **key,
    )
    send(
        "tasks_runs_heartbeat_create",
        "not-in-progress",
        "Refused: the run is not in progress, stop",
        "post",
        f"{url}heartbeat/",
        **key,
    )
    send(
        "tasks_runs_resume_in_cloud_create",
        "resume",
        "Back into cloud, queued",
        "post",
        f"{url}resume_in_cloud/",
        **key,
    )
    send(
        "tasks_runs_resume_in_cloud_create",
        "already",
        "Refused: already active in cloud",
        "post",
        f"{url}resume_in_cloud/",
        **key,
    )
    send(
        "tasks_runs_cancel_create",
        "cancel",
        "A queued run is cancelled at once",
        "post",
        f"{url}cancel/",
        {"reason": "superseded by a newer run"},
        **key,
    )
    send(
        "tasks_runs_set_output_partial_update",
        "replace",
        "Replace the output",
        "patch",
        f"{url}set_output/",
        {"output": {"pr_url": "https://github.com/acme/shop/pull/43", "tests_passed": True}},
        **key,
    )
    send("tasks_runs_events_list", "history", "The run's history", "get", f"{url}events/", **key)
    send("tasks_runs_list", "page", "The task's runs", "get", runs, **key)
    send("runs_list", "page", "The project's runs", "get", f"{mount()}projects/{project.pk}/runs/", **key)
    send(
        "tasks_partial_update",
        "describe",
        "Change a task's description",
        "patch",
        f"{tasks}{task['id']}/",
        {"description": "Fails one run in ten on CI; the payment mock is shared between tests."},
        **key,
    )
    send("tasks_retrieve", "task", "A task", "get", f"{tasks}{task['id']}/", **key)
    send("tasks_list", "page", "The project's tasks", "get", tasks, **key)
    send("projects_list", "page", "The projects you can see", "get", f"{mount()}projects/", **key)


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
KEY_PREFIX = re.compile(r"trk_[A-Za-z0-9_-]{8}")
PROJECT_IN_URL = re.compile(r"projects/\d+/")


def normalized(value: Any, key: str = "") -> Any:
    """The examples with what differs between two runs of the scenario (ids, times) masked."""
    if isinstance(value, dict):
        return {k: normalized(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and key in ("id", "project", "created_by"):
        return "<int>"
    if isinstance(value, str):
        for pattern, mask in (
            (UUID, "<uuid>"),
            (TIME, "<time>"),
            (KEY_PREFIX, "<key>"),
            (PROJECT_IN_URL, "projects/<id>/"),
        ):
            value = pattern.sub(mask, value)
    return value


@pytest.fixture
def recorded():
    user = get_user_model().objects.create_user("demo", password="demo")
    project = Project.objects.create(name="Acme shop")
    project.members.add(user)
    recorder = Recorder(APIClient())
    scenario(recorder, project, issue_key(user, "agent")[1])
    return recorder.examples


def test_the_examples_are_what_the_api_answers(recorded):
    if RECORD:
        EXAMPLES_FILE.write_text(json.dumps(recorded, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    committed = json.loads(EXAMPLES_FILE.read_text(encoding="utf-8"))
    assert normalized(recorded) == normalized(committed), "run `make examples` to record them again"


def test_every_answer_matches_its_documented_schema(recorded, tmp_path):
    """Each recorded answer, errors included, validates against its operation's response schema
    in the generated document (so the error components say what the API really answers)."""
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(out))
    document = yaml.safe_load(out.read_text())
    operations = {
        operation["operationId"]: operation
        for path in document["paths"].values()
        for operation in path.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    checked = 0
    for operation_id, examples in recorded.items():
        for status, answers in examples.get("responses", {}).items():
            schema = operations[operation_id]["responses"][status]["content"]["application/json"]["schema"]
            validator = OAS30Validator({**schema, "components": document["components"]})
            for name, answer in answers.items():
                errors = [error.message for error in validator.iter_errors(answer["value"])]
                assert not errors, (operation_id, status, name, errors[:3])
                checked += 1
    assert checked >= 20


def test_the_schema_carries_the_examples(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(out))
    document = yaml.safe_load(out.read_text())
    patch = document["paths"][f"{mount()}projects/{{project_id}}/tasks/{{task_id}}/runs/{{id}}/"]["patch"]
    body = patch["requestBody"]["content"]["application/json"]["examples"]
    assert body["remove-merge-append"]["value"]["state_append"] == {"gateway_request_ids": "req_01HZX4"}
    done = patch["responses"]["200"]["content"]["application/json"]["examples"]["complete"]["value"]
    assert done["status"] == "completed" and isinstance(done["state"], dict)
    conflict = patch["responses"]["409"]["content"]["application/json"]["examples"]["finished"]["value"]
    assert conflict["errors"][0]["code"] == "invalid_transition"
