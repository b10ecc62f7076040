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
