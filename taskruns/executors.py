"""The two executors of the rule book's plans (taskruns.rules), chosen once per database.

- ``PythonExecutor``: locks the run's row (``SELECT … FOR UPDATE``; on SQLite, the database's
  write lock), applies the plan with ``rules.apply``, saves the row and records its history, in
  one transaction. It works on every database Django supports.
- ``PostgresExecutor``: the same plan as one ``UPDATE … RETURNING`` statement that also writes
  the history (taskruns.postgres), so writers to one run queue only for the statement. When no
  row qualifies, one read and the rule book say why: 404, 412 or 409.

``executor_for()`` makes the choice, in this one place: PostgreSQL's executor where the database
the host's routers write the runs to is PostgreSQL, the Python one everywhere else; either works
on that database alias (taskruns.rows.database_of). tests/test_differential.py runs both on
PostgreSQL and compares rows, errors and history.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, Protocol

from django.db import connections
from django.db.models import F, Q
from rest_framework.exceptions import NotFound

from . import postgres, rows, rules
from .access import RunScope
from .exceptions import InvalidTransition, PreconditionFailed
from .history import Actor, Change, record
from .models import TaskRun
from .transitions import allowed_targets
from .waits import write_transaction

#: The versions a write is conditional on (If-Match), or None.
Versions = Collection[int] | None


class Executor(Protocol):
    def patch(
        self,
        run_id: Any,
        plan: rules.Plan,
        *,
        scope: RunScope | None,
        if_match: Versions,
        now: datetime,
        actor: Actor,
    ) -> tuple[TaskRun, list[Change]]:
        """Apply ``plan`` to the latest row of run ``run_id`` within ``scope`` and record its
        history; the written run and that history. Raises NotFound, PreconditionFailed,
        InvalidTransition or StateTooLarge having written nothing."""
        ...


class PythonExecutor:
    def __init__(self, using: str) -> None:
        self.using = using

    def patch(
        self,
        run_id: Any,
        plan: rules.Plan,
        *,
        scope: RunScope | None,
        if_match: Versions,
        now: datetime,
        actor: Actor,
    ) -> tuple[TaskRun, list[Change]]:
        with write_transaction(self.using):
            run = lock_run(run_id, scope, if_match)
            history = rules.apply(plan, run, now)
            run.version += 1
            run.save()
            record(run, history, actor)
        return run, history


class PostgresExecutor:
    #: Tries when no row qualified but the read finds nothing to refuse (the run changed in
    #: between): then the statement is sent again.
    attempts = 3

    def __init__(self, using: str) -> None:
        self.using = using

    def patch(
        self,
        run_id: Any,
        plan: rules.Plan,
        *,
        scope: RunScope | None,
        if_match: Versions,
        now: datetime,
        actor: Actor,
    ) -> tuple[TaskRun, list[Change]]:
        current: TaskRun | None = None
        for _ in range(self.attempts):
            written = postgres.patch_in_one_statement(
                run_id, plan, scope=scope, if_match=if_match, now=now, actor=actor, using=self.using
            )
            if written is not None:
                run, old_status, old_environment = written
                return run, rules.history(plan, old_status, old_environment, run)
            # No row qualified: say why, by the rule book.
            current = read_run(run_id, scope)
            if current is None:
                raise NotFound()
            check_version(current, if_match)
            refused = rules.refusal(plan, current.status, current.environment)
            if refused is not None:
                raise refused
        # Each read found the row moved on since its statement: refuse rather than loop.
        assert current is not None
        status = current.status
        raise InvalidTransition(status, plan.status or status, allowed_targets(status))


def executor_for() -> Executor:
    """The executor for the database the runs are written to."""
    using = rows.database_of(TaskRun)
    if connections[using].vendor == "postgresql":
        return PostgresExecutor(using)
    return PythonExecutor(using)


def read_run(run_id: Any, scope: RunScope | None) -> TaskRun | None:
    """The run ``run_id`` if it is in ``scope`` (None: any run); one hand-written query."""
    using = rows.database_of(TaskRun)
    scope_sql, scope_params = scope.sql("run", using) if scope is not None else ("TRUE", [])
    sql = (
        f"SELECT {rows.columns(TaskRun, 'run', using)} FROM {TaskRun._meta.db_table} run "
        f"WHERE run.id = %s AND {scope_sql}"
    )
    run_key = TaskRun._meta.pk.get_db_prep_value(run_id, connections[using])
    row = rows.fetch_one(sql, [run_key, *scope_params], using)
    return None if row is None else rows.instance(TaskRun, row, using)


def lock_run(run_id: Any, scope: RunScope | None = None, if_match: Versions = None) -> TaskRun:
    """Read the latest row of a run in ``scope``, locked against other writers until the
    transaction ends. Raises NotFound out of scope, PreconditionFailed on an ``If-Match`` miss."""
    using = rows.database_of(TaskRun)
    features = connections[using].features
    runs = TaskRun.objects.using(using).select_related("task")
    if scope is not None:
        runs = runs.filter(pk__in=scope.runs().values("pk"))
    if features.has_select_for_update:
        of = ("self",) if features.has_select_for_update_of else ()
        runs = runs.select_for_update(of=of)
    else:
        _take_write_lock(run_id, using)
    run = runs.filter(pk=run_id).first()
    if run is None:
        raise NotFound()
    check_version(run, if_match)
    return run


def claim_run(run_id: Any, condition: Q) -> TaskRun | None:
    """Lock run ``run_id`` until the transaction ends if it meets ``condition`` now; None when it
    no longer does, or when another transaction holds its row (skipped, never waited for: a
    reaper must not block a writer, nor two reapers each other)."""
    using = rows.database_of(TaskRun)
    features = connections[using].features
    runs = TaskRun.objects.using(using).filter(condition, pk=run_id)
    if features.has_select_for_update_skip_locked:
        runs = runs.select_for_update(skip_locked=True)
    elif not features.has_select_for_update:
        _take_write_lock(run_id, using)
    return runs.first()


def _take_write_lock(run_id: Any, using: str) -> None:
    # SQLite has no row locks. Writing first takes its database-wide write lock, so no other
    # writer can read-modify-write between our read and our save.
    TaskRun.objects.using(using).filter(pk=run_id).update(version=F("version"))


def check_version(run: TaskRun, if_match: Versions) -> None:
    if if_match is not None and run.version not in if_match:
        raise PreconditionFailed(run)
