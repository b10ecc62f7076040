"""PostHog's own agent API client, unchanged, against the demo app on a live server.

Installs the pinned `@posthog/agent` package (only what `@posthog/agent/posthog-api` needs, see
agent_client/install.sh) and runs agent_client/drive.mjs with Node. Then checks the rows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from taskruns import updates
from taskruns.models import Task, TaskRun, TaskRunEvent, TaskRunLogEntry

pytestmark = [pytest.mark.agent_client, pytest.mark.django_db(transaction=True)]

HERE = Path(__file__).resolve().parent / "agent_client"
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "agent-client"


@pytest.fixture(scope="session")
def agent_client_dir() -> Path:
    assert shutil.which("node") and shutil.which("npm"), "Node.js and npm are needed for this test"
    subprocess.run(["bash", str(HERE / "install.sh"), str(CACHE)], check=True, timeout=300)
    shutil.copy(HERE / "drive.mjs", CACHE / "drive.mjs")
    return CACHE


def test_posthog_agent_client_works_unchanged(transactional_db, live_server, agent_client_dir, settings):
    # PostHog de-duplicates the gateway request ids its agents append; so does this server.
    settings.TASKRUNS = {**settings.TASKRUNS, "STATE_APPEND_UNIQUE_KEYS": ["gateway_request_ids"]}
    out = StringIO()
    call_command("taskruns_demo", "--json", stdout=out)
    demo = json.loads(out.getvalue())
    cloud_run = updates.create_run(Task.objects.get(pk=demo["task_id"]), environment="cloud")
    env = {
        **os.environ,
        "API_URL": live_server.url,
        "PROJECT_ID": str(demo["project_id"]),
        "TASK_ID": demo["task_id"],
        "RUN_ID": demo["run_id"],
        "CLOUD_RUN_ID": str(cloud_run.pk),
        "API_KEY": demo["api_key"],
    }
    result = subprocess.run(
        ["node", "drive.mjs"], cwd=agent_client_dir, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert json.loads(result.stdout.strip().splitlines()[-1])["steps"] == [
        "get task",
        "get run",
        "update status",
        "merge state twice",
        "remove keys",
        "append to state",
        "set stage, branch, output, error_message",
        "hand off to local",
        "set output",
        "append log and read it back",
        "retry once on 401 with a refreshed key",
        "bad key ends in 401",
    ]

    run = TaskRun.objects.get(pk=demo["run_id"])
    assert run.status == "in_progress"
    assert run.state == {"first": 1, "second": {"nested": [2]}, "gateway_request_ids": ["req-1", "req-2"]}
    assert (run.stage, run.branch) == ("build", "posthog-code/fix-flaky-test")
    assert run.output == {"pr_url": "https://example.invalid/pr/2"}
    assert TaskRunLogEntry.objects.filter(run=run).count() == 2
    assert TaskRun.objects.get(pk=cloud_run.pk).environment == "local"
    assert TaskRunEvent.objects.filter(run=cloud_run, kind="environment_changed", via="api").exists()
