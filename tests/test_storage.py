"""How runs are stored on PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection

from taskruns.models import TaskRun

from .conftest import run_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def test_a_large_state_written_through_the_api_is_compressed_with_lz4(api, run):
    """Migration 0003: each PATCH rewrites the whole state, so its compression is on the hot path."""
    state = {f"key-{i}": "value " * 20 for i in range(500)}  # ~75 KB, far above the TOAST threshold
    response = api.patch(run_url(run), {"state": state})
    assert response.status_code == 200
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT pg_column_compression(state) FROM {TaskRun._meta.db_table} WHERE id = %s", [run.pk]
        )
        assert cursor.fetchone()[0] == "lz4"
    assert TaskRun.objects.get(pk=run.pk).state == state


def test_the_functions_of_migration_0005_are_reversible():
    """Dropped and created again by the migration's own two directions (inside the test's
    transaction, which PostgreSQL rolls back with the DDL)."""
    from importlib import import_module

    from django.apps import apps

    migration = import_module("taskruns.migrations.0005_postgres_functions")
    names = [migration.FUNCTION, migration.STATE_FUNCTION]

    def defined() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_proc WHERE proname = ANY(%s)", [names])
            return cursor.fetchone()[0]

    assert defined() == 2
    with connection.schema_editor() as editor:
        migration.drop_functions(apps, editor)
    assert defined() == 0
    with connection.schema_editor() as editor:
        migration.create_functions(apps, editor)
    assert defined() == 2
