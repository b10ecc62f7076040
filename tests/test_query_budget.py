"""Query budgets on PostgreSQL, where a PATCH is one UPDATE … RETURNING statement."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from taskruns.models import TaskRun, TaskRunEvent

from .conftest import run_url, runs_url

# Transactional tests, so that requests run in autocommit as in production: no test-wrapping
# transaction adds savepoints to the count. (BEGIN/COMMIT are not statements Django logs.)
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def count_queries(call) -> tuple[object, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = call()
    return response, [q["sql"] for q in captured.captured_queries]


@pytest.fixture
def warm_api(api, run):
    api.get(run_url(run))  # records the key's last use, which is then not rewritten for minutes
    return api


def test_state_merge_patch_by_api_key_takes_at_most_three_statements(warm_api, run):
    response, queries = count_queries(
        lambda: warm_api.patch(run_url(run), {"state": {"a": 1}}, format="json")
    )
    assert response.status_code == 200
    # The budget is 3; it takes 2: the key lookup and the one-statement write (no BEGIN/COMMIT).
    assert len(queries) == 2, queries
    assert queries[1].lstrip().upper().startswith("UPDATE")  # no move: the plain UPDATE shape
    assert TaskRun.objects.get(pk=run.pk).state == {"a": 1}


def test_status_change_adds_only_the_history_row(warm_api, run):
    body = {"status": "in_progress", "state": {"b": 2}, "state_remove_keys": ["a"]}
    response, queries = count_queries(lambda: warm_api.patch(run_url(run), body, format="json"))
    assert response.status_code == 200
    assert len(queries) == 2, queries  # budget 4; the history rows are written by the same statement
    assert queries[1].lstrip().upper().startswith("WITH OLD AS")
    assert TaskRunEvent.objects.filter(run=run, kind="status_changed").count() == 1


def test_refused_transition_writes_nothing_and_reads_once_to_explain(warm_api, run):
    TaskRun.objects.filter(pk=run.pk).update(status="cancelled")
    before = TaskRun.objects.filter(pk=run.pk).values().get()
    response, queries = count_queries(
        lambda: warm_api.patch(run_url(run), {"status": "queued"}, format="json")
    )
    assert response.status_code == 409
    assert len(queries) <= 3, queries  # key, the conditional statement (no row), the read that explains
    assert TaskRun.objects.filter(pk=run.pk).values().get() == before
    assert TaskRunEvent.objects.filter(run=run).count() == 1  # only "created"


def test_run_list_page_takes_a_constant_number_of_queries(warm_api, task):
    TaskRun.objects.bulk_create([TaskRun(task=task, project_id=task.project_id) for _ in range(10)])
    small, small_queries = count_queries(lambda: warm_api.get(runs_url(task), {"limit": 100}))
    TaskRun.objects.bulk_create([TaskRun(task=task, project_id=task.project_id) for _ in range(100)])
    big, big_queries = count_queries(lambda: warm_api.get(runs_url(task), {"limit": 100}))
    assert len(small.json()["results"]) == 11 and len(big.json()["results"]) == 100
    assert len(big_queries) == len(small_queries) == 4, big_queries  # key, task, count, page


def test_get_of_a_run_takes_two_statements(warm_api, run):
    response, queries = count_queries(lambda: warm_api.get(run_url(run)))
    assert response.status_code == 200 and response.json()["id"] == str(run.pk)
    assert len(queries) == 2, queries  # the key, the run (scope and log flag in the same query)
