"""A host whose database routers send taskruns' models to another alias: the app's hand-written
statements, its reads and its transactions follow them (taskruns.rows.database_of)."""

from __future__ import annotations

import copy

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from taskruns.models import TaskRun, TaskRunEvent

from .conftest import bearer, run_url

ALIAS = "runs"

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, databases=["default", ALIAS])]


class RunsOnTheirOwnAlias:
    """Everything on ALIAS: a second connection to the same (test) database, so that the rows
    are there, and the test can tell which connection each statement went through."""

    def db_for_read(self, model, **hints):
        return ALIAS

    def db_for_write(self, model, **hints):
        return ALIAS


@pytest.fixture(scope="module", autouse=True)
def second_alias(django_db_setup, django_db_blocker):
    """ALIAS, defined before the tests' database set-up asks for it (a module fixture comes
    first), as a copy of the test database's settings."""
    connections.settings[ALIAS] = copy.deepcopy(connections.settings["default"])
    yield
    with django_db_blocker.unblock():
        connections[ALIAS].close()
    del connections[ALIAS]
    del connections.settings[ALIAS]


@pytest.fixture
def routed(settings):
    settings.DATABASE_ROUTERS = [f"{__name__}.RunsOnTheirOwnAlias"]
    return connections[ALIAS]


def test_a_patch_runs_on_the_routed_alias(routed, raw_key, run):
    with (
        CaptureQueriesContext(routed) as on_alias,
        CaptureQueriesContext(connections["default"]) as on_default,
    ):
        response = bearer(raw_key).patch(run_url(run), {"status": "in_progress", "state": {"a": 1}})
    assert response.status_code == 200, response.content
    statements = [query["sql"] for query in on_alias.captured_queries]
    assert any(sql.startswith("SELECT k.") for sql in statements), statements  # the key's lookup
    assert any("UPDATE taskruns_taskrun" in sql for sql in statements), statements  # the PATCH
    assert on_default.captured_queries == []
    assert TaskRun.objects.using(ALIAS).get(pk=run.pk).state == {"a": 1}
    assert TaskRunEvent.objects.using(ALIAS).filter(run_id=run.pk, kind="status_changed").count() == 1


def test_reads_and_actions_run_on_the_routed_alias(routed, raw_key, run):
    with CaptureQueriesContext(connections["default"]) as on_default:
        assert bearer(raw_key).get(run_url(run)).status_code == 200
        assert bearer(raw_key).post(run_url(run, "resume_in_cloud")).status_code == 200
        assert bearer(raw_key).patch(run_url(run, "set_output"), {"output": {"x": 1}}).status_code == 200
    assert on_default.captured_queries == []
    stored = TaskRun.objects.using(ALIAS).get(pk=run.pk)
    assert (stored.environment, stored.output) == ("cloud", {"x": 1})
