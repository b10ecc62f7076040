"""The change feed of a run list (design §14): ``?changes_after=<cursor>``.

A client that keeps following ``next_cursor`` sees every committed change of every run it may
see, each run once per page in its newest form, and a run again only when it changed again.

**Why it cannot skip a change.** Every run carries a ``change_number`` that the database sets
whenever the row is inserted or its ``version`` moves (migration 0010's trigger), and a page is
the runs after the cursor in ``(change_number, id)`` order.

- On PostgreSQL the number is the writing transaction's id. PostgreSQL hands transaction ids out
  in increasing order, at a transaction's first write. A page returns only numbers below the
  *horizon*: the oldest transaction id still in progress in the page query's own snapshot
  (``pg_snapshot_xmin(pg_current_snapshot())``). Every transaction below it has ended, so each
  change below the horizon is either visible to the page query or rolled back, and none can still
  appear there. Every change that becomes visible later belongs to a transaction that was still in
  progress (its id is at or above the horizon) or had not written yet (its id will be above every
  id handed out so far): both are above everything the page returned, so above the cursor. A
  transaction that commits after a newer one therefore never lands behind a cursor. (A sequence
  taken at write time would not do: a transaction can take number 10, stay open, and commit
  after another has committed number 11 and a reader has moved past it.) The price: while a
  transaction stays open anywhere in the cluster, changes newer than it wait for it — the feed
  lags, it does not skip.
- On SQLite the number is one more than the largest in the table, taken under the database's
  single write lock, which is held until commit: numbers are committed in order, every change
  is below the horizon at once.

A run whose task was soft-deleted appears once more, as ``{"id": …, "deleted": true}``: deleting
a task moves its runs' versions (taskruns.views.tasks.TaskViewSet.perform_destroy).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import ValidationError

from . import rows
from .models import TaskRun

#: The oldest transaction still in progress, as the page query's snapshot sees it.
POSTGRES_HORIZON = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


@dataclass(frozen=True)
class Cursor:
    """A position in the feed: after the run ``run_id`` of change ``number`` (None: after
    every run of that number, or, with number -1, the beginning)."""

    number: int
    run_id: uuid.UUID | None = None

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """``0`` (the beginning) or a ``next_cursor`` this feed gave; else a 400."""
        if text == "0":
            return BEGINNING
        number, _dot, run_id = text.partition(".")
        try:
            if not number.lstrip("-").isdigit() or not number.isascii() or len(number) > 20:
                raise ValueError(number)
            return cls(int(number), uuid.UUID(run_id))
        except ValueError:
            raise ValidationError(
                {"changes_after": [_("Not a cursor of this feed; start with 0.")]}, code="invalid_cursor"
            ) from None

    def __str__(self) -> str:
        return f"{self.number}.{self.run_id}" if self.run_id else "0"


BEGINNING = Cursor(-1)


@dataclass(frozen=True)
class Page:
    runs: list[TaskRun]
    next_cursor: Cursor


def changes(runs: QuerySet[TaskRun], after: Cursor, limit: int) -> Page:
    """The next ``limit`` changed runs of ``runs`` after the cursor, and the cursor after them
    (the same cursor when there is nothing new yet)."""
    page = list(runs.filter(_after(after), _committed()).order_by("change_number", "id")[:limit])
    if not page:
        return Page([], after)
    last = page[-1]
    return Page(page, Cursor(last.change_number, last.id))


def _after(cursor: Cursor) -> Any:
    """Runs after the cursor in ``(change_number, id)`` order, as one row comparison: the index
    on ``(project or task, change_number, id)`` then starts the page at the cursor (written as
    ``number > n OR (number = n AND id > i)``, PostgreSQL read every change before it too)."""
    if cursor.run_id is None:
        return Q(change_number__gt=cursor.number)
    connection = connections[rows.database_of(TaskRun)]
    table, quote = TaskRun._meta.db_table, connection.ops.quote_name
    run_key = TaskRun._meta.pk.get_db_prep_value(cursor.run_id, connection)
    return RawSQL(
        f"({quote(table)}.{quote('change_number')}, {quote(table)}.{quote('id')}) > (%s, %s)",
        [cursor.number, run_key],
        output_field=BooleanField(),
    )


def _committed() -> Q:
    """Changes no transaction still in progress can land behind (see the module's docstring)."""
    using = rows.database_of(TaskRun)
    if connections[using].vendor == "postgresql":
        return Q(change_number__lt=RawSQL(POSTGRES_HORIZON, []))
    return Q()
