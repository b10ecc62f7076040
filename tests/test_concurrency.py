"""Concurrent writers on PostgreSQL: no lost update, whatever the interleaving (design §4)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from taskruns.models import TaskRun

from .conftest import run_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WRITERS = 16


def patch_concurrently(run, raw_key, bodies) -> list[int]:
    """Send every body as a PATCH from its own thread, all released at once; return the statuses."""
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = [0] * len(bodies)

    def writer(index: int, body: dict) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        try:
            barrier.wait(timeout=30)
            statuses[index] = client.patch(run_url(run), body, format="json").status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(i, body)) for i, body in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


def test_runs_on_postgresql():
    assert connection.vendor == "postgresql"


def test_sixteen_writers_on_distinct_state_keys_lose_nothing(run, raw_key):
    statuses = patch_concurrently(run, raw_key, [{"state": {f"writer_{i}": i}} for i in range(WRITERS)])
    assert statuses == [200] * WRITERS
    row = TaskRun.objects.get(pk=run.pk)
    assert row.state == {f"writer_{i}": i for i in range(WRITERS)}
    assert row.version == run.version + WRITERS


def test_removals_and_merges_apply_to_the_latest_row(run, raw_key):
    TaskRun.objects.filter(pk=run.pk).update(state={f"old_{i}": i for i in range(WRITERS)})
    bodies = [{"state_remove_keys": [f"old_{i}"], "state": {f"new_{i}": i}} for i in range(WRITERS)]
    assert patch_concurrently(run, raw_key, bodies) == [200] * WRITERS
    assert TaskRun.objects.get(pk=run.pk).state == {f"new_{i}": i for i in range(WRITERS)}


def test_racing_status_writes_respect_the_table(run, raw_key):
    # Half the writers cancel, half try to start the run: whichever order the database picks,
    # a cancelled run is never moved on, and every state key still lands.
    bodies = [
        {"status": "cancelled" if i % 2 else "in_progress", "state": {f"w{i}": i}} for i in range(WRITERS)
    ]
    statuses = patch_concurrently(run, raw_key, bodies)
    assert set(statuses) <= {200, 409}
    row = TaskRun.objects.get(pk=run.pk)
    assert row.status == "cancelled"
    accepted = {f"w{i}" for i, status in enumerate(statuses) if status == 200}
    assert set(row.state) == accepted
    assert row.version == run.version + len(accepted)


def test_concurrent_appends_cannot_pass_the_log_limit_together(run, raw_key, settings):
    """The count and the limit are one statement: of 16 simultaneous appends of 10 entries to a
    log limited to 55, exactly five fit, whatever the interleaving."""
    from taskruns.models import TaskRunLogEntry

    settings.TASKRUNS = {**settings.TASKRUNS, "LOG_MAX_ENTRIES_PER_RUN": 55}
    barrier = threading.Barrier(WRITERS)
    statuses: list[int] = [0] * WRITERS

    def appender(index: int) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        try:
            barrier.wait(timeout=30)
            body = {"entries": [{"writer": index, "n": n} for n in range(10)]}
            statuses[index] = client.post(run_url(run, "append_log"), body, format="json").status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=appender, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [200] * 5 + [413] * 11
    assert TaskRunLogEntry.objects.filter(run=run).count() == 50
    assert TaskRun.objects.get(pk=run.pk).log_entry_count == 50
