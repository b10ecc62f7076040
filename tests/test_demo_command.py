"""The demo data command: idempotent, and the key it prints works."""

from __future__ import annotations

import json
from io import StringIO

from django.core.management import call_command
from rest_framework.test import APIClient

from taskruns.models import ApiKey, Project, Task, TaskRun


def demo() -> dict:
    out = StringIO()
    call_command("taskruns_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_demo_command_creates_working_data_and_is_idempotent(db):
    first = demo()
    second = demo()
    assert (first["project_id"], first["task_id"], first["run_id"]) == (
        second["project_id"],
        second["task_id"],
        second["run_id"],
    )
    assert (Project.objects.count(), Task.objects.count(), TaskRun.objects.count()) == (1, 1, 1)
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 1
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {second['api_key']}")
    response = client.get(second["run_url"].replace("http://127.0.0.1:8000", ""))
    assert response.status_code == 200 and response.json()["id"] == second["run_id"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {first['api_key']}")
    assert client.get(second["run_url"].replace("http://127.0.0.1:8000", "")).status_code == 401


def test_demo_command_prints_usage(db):
    out = StringIO()
    call_command("taskruns_demo", stdout=out)
    text = out.getvalue()
    assert "API key:    trk_" in text and "curl" in text
