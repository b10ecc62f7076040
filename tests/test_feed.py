"""The change feed (design §14, taskruns.feed): ``?changes_after=`` on both run lists.

Both databases for the contract; on PostgreSQL, many writers committing out of order (some
holding their transaction open across other commits) while a reader follows ``next_cursor``:
after a final drain the reader has every run at its stored version and never got a run twice
for the same version."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import connections, transaction
from django.utils import timezone

from taskruns import reaper, updates
from taskruns.keys import issue_key
from taskruns.models import Task, TaskRun

from .conftest import bearer, error_codes, mount, run_url, runs_url, tasks_url

# Every write commits, as a request's does: on PostgreSQL the feed holds back the changes of
# transactions still open, and a test-wrapping transaction would be one.
pytestmark = pytest.mark.django_db(transaction=True)


def project_runs_url(project_id: int) -> str:
    return f"{mount()}projects/{project_id}/runs/"


def feed(api, url, cursor="0", **query) -> dict:
    response = api.get(url, {"changes_after": cursor, **query})
    assert response.status_code == 200, response.content
    return response.json()


def drain(api, url, cursor="0", **query) -> tuple[list[dict], str]:
    """Every change from ``cursor`` on, page by page; the changes and the last cursor."""
    changes = []
    while True:
        page = feed(api, url, cursor, **query)
        changes += page["results"]
        if not page["results"]:
            return changes, cursor
        cursor = page["next_cursor"]


def test_the_feed_starts_with_every_run_and_then_waits(api, task):
    runs = [updates.create_run(task) for _ in range(3)]
    for url in (runs_url(task), project_runs_url(task.project_id)):
        changes, cursor = drain(api, url, limit=2)
        assert sorted(change["id"] for change in changes) == sorted(str(run.pk) for run in runs)
        assert all(change["version"] == 1 and change["status"] == "queued" for change in changes)
        assert feed(api, url, cursor) == {"results": [], "next_cursor": cursor}


def test_a_changed_run_comes_again_once_in_its_newest_form(api, task):
    run, other = updates.create_run(task), updates.create_run(task)
    _, cursor = drain(api, runs_url(task))
    api.patch(run_url(run), {"state": {"a": 1}})
    api.patch(run_url(run), {"status": "in_progress"})
    changes, cursor = drain(api, runs_url(task), cursor)
    assert [(change["id"], change["version"], change["status"]) for change in changes] == [
        (str(run.pk), 3, "in_progress")
    ]
    assert str(other.pk) not in {change["id"] for change in changes}  # untouched: not again


def test_every_write_that_moves_the_version_is_a_change_and_nothing_else_is(api, task, settings):
    """The rule "a change is what moves version" lives in the database's trigger (one per
    vendor): each kind of write is checked against it here, on both databases."""
    settings.TASKRUNS = {**settings.TASKRUNS, "HEARTBEAT_TIMEOUT": 1}
    run = updates.create_run(task)

    def moves(write) -> tuple[bool, bool]:
        before = TaskRun.objects.values("version", "change_number").get(pk=run.pk)
        write()
        after = TaskRun.objects.values("version", "change_number").get(pk=run.pk)
        return after["version"] != before["version"], after["change_number"] != before["change_number"]

    writes = {
        "patch": lambda: api.patch(run_url(run), {"status": "in_progress", "state": {"a": 1}}),
        "heartbeat": lambda: api.post(run_url(run, "heartbeat")),
        "append_log": lambda: api.post(run_url(run, "append_log"), {"entries": [{"n": 1}]}),
        "data patch": lambda: api.patch(run_url(run), {"stage": "x"}),
        "cancel request": lambda: api.post(run_url(run, "cancel")),
        "set_output": lambda: api.patch(run_url(run, "set_output"), {"output": {"ok": True}}),
        "resume": lambda: api.post(run_url(run, "resume_in_cloud")),
        "reap": lambda: (
            TaskRun.objects.filter(pk=run.pk).update(status="in_progress"),
            reaper.reap(now=timezone.now() + timezone.timedelta(hours=1)),
        ),
        "stale save of the row": lambda: TaskRun.objects.get(pk=run.pk).save(),
    }
    results = {name: moves(write) for name, write in writes.items()}
    assert results == {
        "patch": (True, True),
        "heartbeat": (False, False),
        "append_log": (False, False),
        "data patch": (True, True),
        "cancel request": (True, True),
        "set_output": (True, True),
        "resume": (True, True),
        "reap": (True, True),
        "stale save of the row": (False, False),
    }


def test_a_run_of_a_deleted_task_appears_once_more_as_a_tombstone(api, task, project, user):
    kept_task = Task.objects.create(project=project, title="kept", created_by=user)
    gone, kept = updates.create_run(task), updates.create_run(kept_task)
    url = project_runs_url(project.pk)
    _, cursor = drain(api, url)
    assert api.delete(f"{tasks_url(project.pk)}{task.pk}/").status_code == 204
    changes, cursor = drain(api, url, cursor)
    assert changes == [{"id": str(gone.pk), "deleted": True}]
    api.patch(run_url(kept), {"state": {"b": 2}})
    changes, _ = drain(api, url, cursor)
    assert [change["id"] for change in changes] == [str(kept.pk)]
    # From the beginning, the deleted task's run is only a tombstone.
    everything, _ = drain(api, url)
    assert {"id": str(gone.pk), "deleted": True} in everything


def test_runs_written_together_are_paged_without_loss(api, task):
    with transaction.atomic():  # on PostgreSQL one transaction: the same change number for all
        runs = [updates.create_run(task) for _ in range(7)]
    changes, _ = drain(api, runs_url(task), limit=2)
    assert sorted(change["id"] for change in changes) == sorted(str(run.pk) for run in runs)
    assert len(changes) == 7


def test_the_feed_takes_no_filter_but_task(api, task):
    updates.create_run(task)
    url = project_runs_url(task.project_id)
    assert api.get(url, {"changes_after": "0", "task": str(task.pk)}).status_code == 200
    for name, value in (("status", "queued"), ("ordering", "-created_at"), ("cursor", ""), ("offset", "0")):
        response = api.get(url, {"changes_after": "0", name: value})
        assert response.status_code == 400, name
        assert error_codes(response) == {name: "not_with_changes_after"}


@pytest.mark.parametrize(
    "cursor", ["", "abc", "12", "12.not-a-uuid", "1e5.0", "١.00000000-0000-0000-0000-000000000000"]
)
def test_a_cursor_the_feed_did_not_give_is_a_400(api, task, cursor):
    response = api.get(runs_url(task), {"changes_after": cursor})
    assert response.status_code == 400
    assert error_codes(response) == {"changes_after": "invalid_cursor"}


def test_the_feed_is_scoped(api, task):
    updates.create_run(task)
    stranger = bearer(issue_key(get_user_model().objects.create_user("stranger"), "k")[1])
    assert stranger.get(project_runs_url(task.project_id), {"changes_after": "0"}).status_code == 404
    assert stranger.get(runs_url(task), {"changes_after": "0"}).status_code == 404


# --- PostgreSQL: writers committing out of order ------------------------------------------


@pytest.mark.postgres
def test_a_reader_following_the_feed_never_skips_a_commit(api, task):
    """Eight writer threads create and patch runs; some hold their transaction open across
    other writers' commits (so later transaction ids commit first). A reader follows
    next_cursor throughout. After a final drain the reader holds every run at its stored
    version and never received the same run twice at one version."""
    url = project_runs_url(task.project_id)
    seeded = [updates.create_run(task) for _ in range(20)]
    stop = threading.Event()
    errors: list[BaseException] = []
    received: dict[str, list[int]] = {}
    cursor = ["0"]

    def write(worker: int) -> None:
        rng = random.Random(worker)
        try:
            for step in range(25):
                with transaction.atomic():
                    if rng.random() < 0.4:
                        updates.create_run(task)
                    else:
                        run_id = rng.choice(seeded).pk
                        updates.update_run(run_id, {"state": {f"w{worker}": step}})
                    if rng.random() < 0.3:
                        time.sleep(rng.uniform(0.01, 0.08))  # held open while others commit
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
        finally:
            connections.close_all()

    def read() -> None:
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=api._credentials["HTTP_AUTHORIZATION"])
        try:
            while not stop.is_set():
                page = client.get(url, {"changes_after": cursor[0], "limit": 7}).json()
                for change in page["results"]:
                    received.setdefault(change["id"], []).append(change["version"])
                cursor[0] = page["next_cursor"]
                time.sleep(0.005)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
        finally:
            connections.close_all()

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    stop.set()
    reader.join(timeout=60)
    assert not errors, errors
    # The final drain, from where the reader stopped.
    changes, _ = drain(api, url, cursor[0])
    for change in changes:
        received.setdefault(change["id"], []).append(change["version"])

    stored = dict(TaskRun.objects.filter(task=task).values_list("id", "version"))
    assert {uuid.UUID(run_id) for run_id in received} == set(stored)
    for run_id, versions in received.items():
        assert versions[-1] == stored[uuid.UUID(run_id)], run_id
        assert versions == sorted(set(versions)), (run_id, versions)  # never twice, never back
    assert sum(len(versions) for versions in received.values()) > len(stored)  # it saw updates live
