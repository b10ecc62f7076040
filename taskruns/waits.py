"""Bounded waits on PostgreSQL (design §11): no write waits for ever, whatever another session
or the database itself does.

Two limits are set by the write itself, so they hold through a transaction-mode pooler (which
refuses start-up ``options`` and would hand a session ``SET`` to the next client):

- ``TASKRUNS["LOCK_TIMEOUT"]``: the longest a write waits for a run's row lock held by someone
  else. Set with ``set_config('lock_timeout', …, true)`` — local to the transaction — at the
  start of each write transaction (``write_transaction``), and inside the one-statement PATCH
  and the heartbeat's statement (``lock_timeout_condition``), where it runs before the row is
  locked. Past it PostgreSQL ends the statement (SQLSTATE 55P03): a 503 ``run_busy``.
- ``TASKRUNS["STATEMENT_TIMEOUT"]``: the longest one statement of a write transaction runs
  (SQLSTATE 57014: a 503 ``database_timeout``). A statement's own timer starts before it runs,
  so the one-statement PATCH, whose work besides the lock wait is one row, has the lock limit
  and the client-side deadline (taskruns.deadline) instead.

Either way the statement is rolled back, and other tenants' requests are not held up behind it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections, transaction

from .conf import app_settings

#: SQLSTATEs of the limits above, and the error each becomes (taskruns.views.base).
LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"


def _milliseconds(seconds: float | None) -> str:
    return "0" if seconds is None else f"{max(1, round(seconds * 1000))}ms"


@contextmanager
def write_transaction(using: str) -> Iterator[None]:
    """``transaction.atomic`` whose statements wait for locks and run no longer than the limits."""
    with transaction.atomic(using=using):
        connection = connections[using]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                    [_milliseconds(app_settings.LOCK_TIMEOUT), _milliseconds(app_settings.STATEMENT_TIMEOUT)],
                )
        yield


def lock_timeout_condition(using: str) -> tuple[str, list[Any]]:
    """A WHERE condition, true for every row, that sets the lock limit local to the statement's
    transaction before the row it qualifies is locked (on PostgreSQL; elsewhere just TRUE)."""
    if connections[using].vendor != "postgresql":
        return "TRUE", []
    return "set_config('lock_timeout', %s, true) IS NOT NULL", [_milliseconds(app_settings.LOCK_TIMEOUT)]
