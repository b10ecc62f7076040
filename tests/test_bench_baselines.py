"""The benchmark's baselines do what bench/README.md says, so its numbers mean something."""

from __future__ import annotations

import pytest
from django.test import override_settings

from taskruns.models import TaskRun

pytestmark = pytest.mark.urls("bench.urls")


@pytest.mark.parametrize(
    "target",
    [
        "posthog",
        "naive",
        pytest.param("floor", marks=pytest.mark.postgres),
        pytest.param("drf-floor", marks=pytest.mark.postgres),
        pytest.param("floor-key-in-update", marks=pytest.mark.postgres),
    ],
)
def test_baseline_patch_merges_state(api, run, target):
    TaskRun.objects.filter(pk=run.pk).update(state={"kept": 1})
    response = api.patch(f"/bench/{target}/runs/{run.pk}/", {"state": {"added": 2}}, format="json")
    assert response.status_code == 200
    row = TaskRun.objects.get(pk=run.pk)
    assert row.state == {"kept": 1, "added": 2} and row.version == run.version + 1


@pytest.mark.parametrize(
    "path", ["/bench/posthog/runs/{run}/", "/bench/floor/runs/{run}/", "/bench/drf-floor/runs/{run}/"]
)
def test_baseline_get_needs_the_key(api, run, path, client):
    assert api.get(path.format(run=run.pk)).json()["id"] == str(run.pk)
    assert client.get(path.format(run=run.pk)).status_code in (401, 403)


@pytest.mark.postgres
def test_the_floor_checking_its_key_in_its_update_refuses_a_bad_key(raw_key, run):
    from rest_framework.test import APIClient

    TaskRun.objects.filter(pk=run.pk).update(state={"kept": 1})
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key[:-1]}{'x' if raw_key[-1] != 'x' else 'y'}")
    response = client.patch(f"/bench/floor-key-in-update/runs/{run.pk}/", {"state": {"a": 2}}, format="json")
    assert response.status_code == 401
    assert TaskRun.objects.get(pk=run.pk).state == {"kept": 1}


@pytest.mark.parametrize(
    "path", ["/bench/posthog/tasks/{task}/runs/?limit=100", "/bench/floor/tasks/{task}/runs/"]
)
def test_baseline_lists(api, run, path):
    assert len(api.get(path.format(task=run.task_id)).json()["results"]) == 1


@override_settings(ROOT_URLCONF="bench.urls")
def test_the_app_is_served_beside_the_baselines(api, run):
    assert api.get(f"/api/projects/{run.project_id}/tasks/{run.task_id}/runs/{run.pk}/").status_code == 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_lock_timer_sees_one_locked_interval_per_patch(run, raw_key, monkeypatch):
    """bench/locks.py: one interval per PATCH for each kind of write (autocommit statement,
    transaction ended by COMMIT). Durations are printed by the bench, never asserted."""
    from bench import locks

    monkeypatch.setattr(locks, "WRITES", 5)
    monkeypatch.setattr(locks, "STATE_KEYS", 10)
    data = {"project": run.project_id, "task": run.task_id, "key": raw_key}
    templates = {
        "taskruns": "/api/projects/{project}/tasks/{task}/runs/{run}/",
        "posthog-style": "/bench/posthog/runs/{run}/",
        "floor": "/bench/floor/runs/{run}/",
    }
    held = locks.lock_hold_times(data, templates)
    assert [row["target"] for row in held] == list(templates)
    assert all(0 < row["p50"] <= row["p90"] for row in held)
    assert TaskRun.objects.filter(state__has_key="added4").count() == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_cpu_probe_patches_in_process_and_reads_the_backends_cpu(run, raw_key, monkeypatch):
    """bench/cpu.py: its PATCH goes through Django's WSGI handler and lands; the backend's CPU
    is read from /proc and only grows; a connection closed between requests (another backend,
    whose CPU starts again from zero) stops it. (The CPU figures are printed, never asserted.)"""
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection

    from bench import cpu

    path = f"/api/projects/{run.project_id}/tasks/{run.task_id}/runs/{run.pk}/"
    with pytest.raises(SystemExit, match="CONN_MAX_AGE"):
        cpu.cpu_of(WSGIHandler(), [path], raw_key, requests=2)  # the tests' CONN_MAX_AGE is 0
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", None)  # as the bench's 600
    connection.close()
    try:
        pid, before = cpu.backend_cpu()
        app, database = cpu.cpu_of(WSGIHandler(), [path], raw_key, requests=5)
        assert app > 0 and database >= 0
        assert cpu.backend_cpu()[0] == pid and cpu.backend_cpu()[1] >= before
        with pytest.raises(SystemExit):
            cpu.patch(WSGIHandler(), path.replace(str(run.pk)[:8], "00000000"), raw_key, 0)
    finally:
        connection.close()
    assert TaskRun.objects.get(pk=run.pk).version == 8  # 2 + 5 PATCHes landed
