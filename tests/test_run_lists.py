"""Run lists (design §14): filters on a task's list and on the project-wide list, cursor pages,
the bounded count, and scoping. Both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from taskruns.keys import issue_key
from taskruns.models import Project, Task, TaskRun

from .conftest import bearer, error_codes, mount, runs_url

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def project_runs_url(project_id: int) -> str:
    return f"{mount()}projects/{project_id}/runs/"


def make_run(task, *, status="queued", environment="local", stage=None, created=0, updated=None, **columns):
    """A run created ``created`` hours after T0 and last written ``updated`` hours after it."""
    run = TaskRun.objects.create(
        task=task, project_id=task.project_id, status=status, environment=environment, stage=stage, **columns
    )
    created_at = T0 + timedelta(hours=created)
    updated_at = T0 + timedelta(hours=created if updated is None else updated)
    TaskRun.objects.filter(pk=run.pk).update(created_at=created_at, updated_at=updated_at)
    return run


@pytest.fixture
def other_task(project, user):
    return Task.objects.create(project=project, title="Another task", created_by=user)


@pytest.fixture
def runs(task, other_task):
    """Six runs of the task and two of another task of the same project, by name."""
    return {
        "queued": make_run(task, created=1, updated=10),
        "started": make_run(task, status="in_progress", stage="build", created=2, updated=3),
        "cloud": make_run(task, status="in_progress", environment="cloud", created=3, updated=12),
        "done": make_run(task, status="completed", stage="build", created=4, updated=5),
        "failed": make_run(task, status="failed", stage="plan", created=5, updated=6),
        "waiting": make_run(task, status="not_started", created=6, updated=7),
        "other queued": make_run(other_task, created=7, updated=8),
        "other done": make_run(other_task, status="completed", stage="build", created=8, updated=9),
    }


TASK_RUNS = ["queued", "started", "cloud", "done", "failed", "waiting"]


@pytest.fixture(params=["task", "project"])
def listing(request, task, runs):
    """(url, names of the runs it lists unfiltered): a task's run list, or the project's."""
    if request.param == "task":
        return runs_url(task), TASK_RUNS
    return project_runs_url(task.project_id), [*TASK_RUNS, "other queued", "other done"]


def names(response, runs) -> list[str]:
    assert response.status_code == 200, response.content
    by_id = {str(run.pk): name for name, run in runs.items()}
    return [by_id[item["id"]] for item in response.json()["results"]]


def listed(api, url, runs, **query) -> list[str]:
    return names(api.get(url, query), runs)


def test_unfiltered_lists_are_newest_first(api, listing, runs):
    url, expected = listing
    assert listed(api, url, runs) == sorted(expected, key=lambda name: runs[name].created_at, reverse=True)


@pytest.mark.parametrize(
    ("query", "wanted"),
    [
        ({"status": "in_progress"}, {"started", "cloud"}),
        ({"status": "in_progress,completed"}, {"started", "cloud", "done", "other done"}),
        ({"status": "not_started,failed"}, {"failed", "waiting"}),
        ({"environment": "cloud"}, {"cloud"}),
        ({"stage": "build"}, {"started", "done", "other done"}),
        ({"stage": "build", "status": "completed"}, {"done", "other done"}),
        ({"created_after": "2026-01-01T04:00:00Z"}, {"failed", "waiting", "other queued", "other done"}),
        ({"created_before": "2026-01-01T03:00:00Z"}, {"queued", "started"}),
        (
            {"created_after": "2026-01-01T02:00:00Z", "created_before": "2026-01-01T05:00:00Z"},
            {"cloud", "done"},
        ),
        ({"updated_after": "2026-01-01T08:30:00Z"}, {"queued", "cloud", "other done"}),
        (
            {"updated_after": "2026-01-01T08:30:00+02:00"},
            {"queued", "cloud", "other done", "waiting", "other queued"},
        ),
    ],
)
def test_each_filter_narrows_the_list(api, listing, runs, query, wanted):
    url, unfiltered = listing
    assert set(listed(api, url, runs, **query)) == wanted & set(unfiltered)


@pytest.mark.parametrize(
    ("ordering", "key", "reverse"),
    [
        ("created_at", "created_at", False),
        ("-created_at", "created_at", True),
        ("updated_at", "updated_at", False),
        ("-updated_at", "updated_at", True),
    ],
)
def test_lists_take_an_ordering(api, listing, runs, ordering, key, reverse):
    url, unfiltered = listing
    expected = sorted(
        unfiltered, key=lambda name: getattr(TaskRun.objects.get(pk=runs[name].pk), key), reverse=reverse
    )
    assert listed(api, url, runs, ordering=ordering) == expected


def test_the_stale_filter_uses_the_lifecycles_rule(api, listing, runs, settings):
    settings.TASKRUNS = {**settings.TASKRUNS, "QUEUED_TTL": 60}
    silent = timezone.now() - timedelta(hours=1)
    TaskRun.objects.filter(pk=runs["started"].pk).update(
        heartbeat_timeout=timedelta(seconds=30), status_changed_at=silent
    )
    TaskRun.objects.filter(pk=runs["cloud"].pk).update(
        heartbeat_timeout=timedelta(seconds=30), status_changed_at=silent, last_heartbeat_at=timezone.now()
    )
    TaskRun.objects.filter(pk=runs["queued"].pk).update(status_changed_at=silent)
    TaskRun.objects.exclude(pk__in=[runs["started"].pk, runs["queued"].pk]).update(
        status_changed_at=timezone.now()
    )
    url, unfiltered = listing
    assert set(listed(api, url, runs, stale="true")) == {"started", "queued"}
    assert set(listed(api, url, runs, stale="false")) == set(unfiltered) - {"started", "queued"}


def test_the_project_list_spans_its_tasks_and_takes_a_task_filter(api, task, other_task, runs):
    url = project_runs_url(task.project_id)
    assert set(listed(api, url, runs, task=str(other_task.pk))) == {"other queued", "other done"}
    assert set(listed(api, url, runs, task=str(task.pk), status="completed")) == {"done"}


def test_the_project_list_leaves_out_runs_of_deleted_tasks_and_other_projects(
    api, task, other_task, runs, user
):
    elsewhere = Project.objects.create(name="Elsewhere")
    elsewhere.members.add(user)
    make_run(Task.objects.create(project=elsewhere, title="theirs"))
    Task.objects.filter(pk=other_task.pk).update(deleted_at=timezone.now())
    assert set(listed(api, project_runs_url(task.project_id), runs)) == set(TASK_RUNS)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"status": "bogus"}, "invalid_choice"),
        ({"status": "queued,bogus"}, "invalid_choice"),
        ({"status": "QUEUED"}, "invalid_choice"),
        ({"environment": "moon"}, "invalid_choice"),
        ({"created_after": "yesterday"}, "invalid"),
        ({"created_before": "2026-13-01"}, "invalid"),
        ({"updated_after": "1"}, "invalid"),
        ({"stale": "maybe"}, "invalid_choice"),
        ({"stale": "1"}, "invalid_choice"),
        ({"ordering": "stage"}, "invalid_choice"),
        ({"ordering": "-version"}, "invalid_choice"),
    ],
)
def test_a_filter_value_it_cannot_take_is_a_400(api, listing, runs, query, code):
    url, _ = listing
    response = api.get(url, query)
    assert response.status_code == 400
    assert error_codes(response) == {name: code for name in query}


def test_a_time_with_any_offset_python_reads_is_a_moment_not_a_500(api, listing, runs):
    """PostgreSQL refuses offsets past ±15:59 (the fuzzer's ``+21:18`` was a 500): the filter
    hands the database the same moment in UTC."""
    url, unfiltered = listing
    # 2026-01-01T06:30Z, written with an offset PostgreSQL would refuse.
    assert set(listed(api, url, runs, updated_after="2026-01-02T03:48:00+21:18")) == {
        "queued",
        "cloud",
        "other done",
        "waiting",
        "other queued",
    } & set(unfiltered)
    assert listed(api, url, runs, created_after="0391-01-14T00:21:44+21:18") != []


def test_a_time_an_offset_takes_out_of_range_is_a_400(api, listing, runs):
    url, _ = listing
    response = api.get(url, {"created_before": "0001-01-01T00:00:00+10:00"})
    assert response.status_code == 400
    assert error_codes(response) == {"created_before": "invalid"}


def test_a_malformed_task_filter_is_a_400(api, task, runs):
    response = api.get(project_runs_url(task.project_id), {"task": "not-a-uuid"})
    assert response.status_code == 400
    assert error_codes(response) == {"task": "invalid"}


def test_the_project_list_is_scoped_like_the_task_list(api, task, runs, project):
    url = project_runs_url(task.project_id)
    stranger = get_user_model().objects.create_user("stranger", password="pw")
    outsider = bearer(issue_key(stranger, "theirs")[1])
    assert outsider.get(url).status_code == 404
    assert bearer("trk_notakey").get(url).status_code == 401
    assert api.get(project_runs_url(999999)).status_code == 404
    assert api.get(f"{mount()}projects/abc/runs/").status_code == 404
    # A key limited to another project does not reach this one.
    other = Project.objects.create(name="Other")
    other.members.add(task.created_by)
    limited, raw = issue_key(task.created_by, "limited to other")
    limited.projects.add(other)
    assert bearer(raw).get(url).status_code == 404
    assert bearer(raw).get(project_runs_url(other.pk)).status_code == 200


def test_cursor_pages_walk_the_whole_list_once(api, listing, runs):
    url, unfiltered = listing
    first = api.get(url, {"cursor": "", "limit": 3})
    assert first.status_code == 200
    assert "count" not in first.json()
    seen, page = [], first.json()
    while True:
        seen += [item["id"] for item in page["results"]]
        if not page["next"]:
            break
        page = api.get(page["next"]).json()
    by_id = {str(run.pk): name for name, run in runs.items()}
    assert [by_id[i] for i in seen] == sorted(
        unfiltered, key=lambda name: runs[name].created_at, reverse=True
    )


def test_cursor_pages_keep_the_filter_and_ordering(api, listing, runs):
    url, unfiltered = listing
    page = api.get(
        url, {"cursor": "", "limit": 1, "status": "in_progress,completed", "ordering": "updated_at"}
    ).json()
    seen = []
    while True:
        seen += [item["id"] for item in page["results"]]
        if not page["next"]:
            break
        page = api.get(page["next"]).json()
    wanted = [n for n in unfiltered if runs[n].status in ("in_progress", "completed")]
    expected = sorted(wanted, key=lambda name: TaskRun.objects.get(pk=runs[name].pk).updated_at)
    assert seen == [str(runs[name].pk) for name in expected]


def test_a_cursor_the_list_did_not_give_is_a_400(api, listing, runs):
    url, _ = listing
    response = api.get(url, {"cursor": "o=1&p=*"})
    assert response.status_code == 400
    assert error_codes(response) == {"cursor": "invalid_cursor"}


def test_the_count_and_the_offset_stop_at_the_configured_limit(api, listing, runs, settings):
    settings.TASKRUNS = {**settings.TASKRUNS, "LIST_COUNT_LIMIT": 4}
    url, _ = listing
    body = api.get(url, {"limit": 2}).json()
    assert body["count"] == 4
    assert len(api.get(url, {"limit": 2, "offset": 2}).json()["results"]) == 2
    response = api.get(url, {"offset": 4})
    assert response.status_code == 400
    assert error_codes(response) == {"offset": "offset_too_large"}
    # Cursor pages go on past it.
    assert len(api.get(url, {"cursor": "", "limit": 100}).json()["results"]) > 4
