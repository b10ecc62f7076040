"""Query budgets on PostgreSQL, where a PATCH is one UPDATE … RETURNING statement."""

from __future__ import annotations

import pytest
from django.db import connection

from taskruns.models import TaskRun, TaskRunEvent

from .conftest import run_url, runs_url, statements_of

# Transactional tests, so that requests run in autocommit as in production: no test-wrapping
# transaction adds savepoints to the count. (BEGIN/COMMIT are not statements Django logs.)
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def warm_api(api, run):
    api.get(run_url(run))  # records the key's last use, which is then not rewritten for minutes
    return api


def test_state_merge_patch_by_api_key_is_the_key_lookup_and_one_write(warm_api, run):
    response, queries = statements_of(
        lambda: warm_api.patch(run_url(run), {"state": {"a": 1}}, format="json")
    )
    assert response.status_code == 200
    # The budget is 3; it takes 2: DRF's authentication looks the key up, then one write
    # (no BEGIN/COMMIT).
    assert len(queries) == 2, queries
    assert queries[0].lstrip().startswith("SELECT k.")
    assert queries[1].lstrip().upper().startswith("UPDATE")  # no move: the plain UPDATE shape
    assert TaskRun.objects.get(pk=run.pk).state == {"a": 1}


def test_status_change_adds_only_the_history_row(warm_api, run):
    body = {"status": "in_progress", "state": {"b": 2}, "state_remove_keys": ["a"]}
    response, queries = statements_of(lambda: warm_api.patch(run_url(run), body, format="json"))
    assert response.status_code == 200
    # Budget 4; the key's lookup, then one statement that also writes the history rows.
    assert len(queries) == 2, queries
    assert queries[1].lstrip().upper().startswith("WITH OLD AS")
    assert TaskRunEvent.objects.filter(run=run, kind="status_changed").count() == 1


def test_refused_transition_writes_nothing_and_reads_once_to_explain(warm_api, run):
    TaskRun.objects.filter(pk=run.pk).update(status="cancelled")
    before = TaskRun.objects.filter(pk=run.pk).values().get()
    response, queries = statements_of(
        lambda: warm_api.patch(run_url(run), {"status": "queued"}, format="json")
    )
    assert response.status_code == 409
    # The key's lookup, the conditional statement (no row), the read that explains.
    assert len(queries) == 3, queries
    assert TaskRun.objects.filter(pk=run.pk).values().get() == before
    assert TaskRunEvent.objects.filter(run=run).count() == 1  # only "created"


def test_run_list_page_takes_a_constant_number_of_queries(warm_api, task):
    TaskRun.objects.bulk_create([TaskRun(task=task, project_id=task.project_id) for _ in range(10)])
    small, small_queries = statements_of(lambda: warm_api.get(runs_url(task), {"limit": 100}))
    TaskRun.objects.bulk_create([TaskRun(task=task, project_id=task.project_id) for _ in range(100)])
    big, big_queries = statements_of(lambda: warm_api.get(runs_url(task), {"limit": 100}))
    assert len(small.json()["results"]) == 11 and len(big.json()["results"]) == 100
    assert len(big_queries) == len(small_queries) == 4, big_queries  # key, task, count, page


def test_get_of_a_run_is_the_key_lookup_and_one_read(warm_api, run):
    response, queries = statements_of(lambda: warm_api.get(run_url(run)))
    assert response.status_code == 200 and response.json()["id"] == str(run.pk)
    assert len(queries) == 2, queries  # the key; the run, with the scope and the log flag
    assert queries[1].lstrip().startswith("SELECT run.")


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


def test_hot_statements_are_planned_once_per_connection(warm_api, run):
    threshold = connection.connection.prepare_threshold
    assert threshold == 5  # the demo settings' OPTIONS (Django's default is None: never)
    for number in range(threshold + 1):
        assert warm_api.patch(run_url(run), {"state": {f"k{number}": number}}).status_code == 200
        assert warm_api.get(run_url(run)).status_code == 200
        assert warm_api.get(runs_url(run.task)).status_code == 200
    statements = prepared_statements()
    assert any(s.startswith("UPDATE taskruns_taskrun AS run SET") for s in statements), statements
    assert any(s.startswith("SELECT k.") for s in statements), statements  # the key's lookup
    assert any(s.startswith("SELECT run.") for s in statements), statements  # the read of a run
    # The prepared statements give the same answers as the first, unprepared runs.
    assert TaskRun.objects.get(pk=run.pk).state == {f"k{n}": n for n in range(threshold + 1)}
    assert warm_api.get(run_url(run)).json()["state"] == {f"k{n}": n for n in range(threshold + 1)}


def test_nothing_is_prepared_when_the_host_turns_it_off(warm_api, run):
    connection.connection.prepare_threshold = None  # as "prepare_threshold": None in OPTIONS does
    try:
        connection.connection.execute("DEALLOCATE ALL")
        for number in range(8):
            assert warm_api.patch(run_url(run), {"state": {f"k{number}": number}}).status_code == 200
        assert prepared_statements() == []
        assert TaskRun.objects.get(pk=run.pk).state == {f"k{n}": n for n in range(8)}
    finally:
        connection.connection.prepare_threshold = 5


def runs_url_of_project(project_id):
    from .conftest import mount

    return f"{mount()}projects/{project_id}/runs/"


@pytest.mark.parametrize(
    ("query", "budget"),
    [
        # the key, the task or project, the count, the page
        ({"limit": 100, "status": "queued,in_progress", "ordering": "-updated_at"}, 4),
        # the key, the task or project, the page (no count)
        ({"limit": 100, "cursor": "", "environment": "local", "stale": "false"}, 3),
        ({"limit": 100, "changes_after": "0"}, 3),
    ],
)
def test_a_filtered_page_cursor_page_and_feed_page_take_a_constant_number_of_queries(
    warm_api, task, query, budget
):
    TaskRun.objects.bulk_create([TaskRun(task=task, project_id=task.project_id) for _ in range(10)])
    counts = []
    for url in (runs_url(task), runs_url_of_project(task.project_id)):
        small, small_queries = statements_of(lambda url=url: warm_api.get(url, query))
        counts.append(len(small_queries))
    TaskRun.objects.bulk_create([TaskRun(task=task, project_id=task.project_id) for _ in range(150)])
    for index, url in enumerate((runs_url(task), runs_url_of_project(task.project_id))):
        big, big_queries = statements_of(lambda url=url: warm_api.get(url, query))
        assert len(big.json()["results"]) == 100
        assert len(big_queries) == counts[index], big_queries
    assert counts == [budget, budget], counts
