"""Every write to a run goes through here: PATCH, run actions, the admin and internal code.

A change is applied to the latest stored row — on PostgreSQL a PATCH is one conditional
statement (taskruns.postgres), otherwise the row is locked and saved inside one transaction — so
that concurrent writers never lose each other's keys and a rejected change leaves the row as it
was. The change is recorded in the run's history in the same transaction, and signals are
sent only after it commits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.exceptions import NotFound

from . import postgres, rows, signals
from .access import RunScope
from .conf import app_settings
from .exceptions import (
    AlreadyActiveInCloud,
    CloudStartFailed,
    InvalidTransition,
    LogFull,
    PreconditionFailed,
    StateTooLarge,
)
from .history import SYSTEM, Actor, Change, record
from .models import Task, TaskRun, TaskRunEnvironment, TaskRunEventKind, TaskRunLogEntry, TaskRunStatus
from .transitions import allowed_targets, is_allowed, is_terminal

logger = logging.getLogger(__name__)

Kind = TaskRunEventKind


def read_run(run_id, scope: RunScope | None) -> TaskRun | None:
    """The run ``run_id`` if it is in ``scope`` (None: any run); one hand-written query."""
    scope_sql, scope_params = scope.sql("run") if scope is not None else ("TRUE", [])
    sql = (
        f"SELECT {rows.columns(TaskRun, 'run')} FROM {TaskRun._meta.db_table} run "
        f"WHERE run.id = %s AND {scope_sql}"
    )
    row = rows.fetch_one(sql, [TaskRun._meta.pk.get_db_prep_value(run_id, connection), *scope_params])
    return None if row is None else rows.instance(TaskRun, row)


def create_run(
    task: Task,
    *,
    status: str = TaskRunStatus.QUEUED,
    environment: str = TaskRunEnvironment.LOCAL,
    actor: Actor = SYSTEM,
) -> TaskRun:
    """Create a run of ``task``, record it and announce it once committed."""
    with transaction.atomic():
        run = TaskRun.objects.create(
            task=task, project_id=task.project_id, status=status, environment=environment
        )
        _commit(run, [Change(Kind.CREATED, new=status)], actor, bump=False)
    return run


def update_run(
    run_id, changes: Mapping[str, Any], actor: Actor = SYSTEM, *, scope=None, if_match=None
) -> TaskRun:
    """Apply a validated PATCH (any subset of TaskRunUpdateSerializer's fields) to the latest
    row of a run within ``scope`` (a RunScope; None: any run).

    ``if_match`` is None or the set of versions the write is conditional on. Raises NotFound
    when the run is not in scope, PreconditionFailed when its version is not in ``if_match``,
    InvalidTransition when the status or environment move is not allowed; nothing is written
    then. On PostgreSQL the write is one statement (taskruns.postgres); elsewhere the row is
    locked, changed in Python and saved, with the same results.
    """
    if connection.vendor == "postgresql":
        # One statement writes the row and its history: atomic without a transaction block.
        run = _patch_in_one_statement(run_id, changes, scope, if_match, actor)
        _announce_on_commit(run, history_of(changes, run.old_status, run.old_environment, run))
        return run
    with transaction.atomic():
        run = lock_run(run_id, scope, if_match)
        old_status, old_environment = run.status, run.environment
        apply_changes(run, changes)
        _commit(run, history_of(changes, old_status, old_environment, run), actor)
    return run


def _patch_in_one_statement(run_id, changes, scope, if_match, actor, attempts: int = 3) -> TaskRun:
    for _ in range(attempts):
        run = postgres.patch_in_one_statement(
            run_id, changes, scope=scope, if_match=if_match, now=timezone.now(), actor=actor
        )
        if run is not None:
            return run
        # No row qualified: say why, by the same rules the Python path applies.
        current = read_run(run_id, scope)
        if current is None:
            raise NotFound()
        _check_version(current, if_match)
        apply_changes(current, changes)  # raises InvalidTransition if the move is refused
        # Nothing refuses it now: the run changed between the statement and this read. Again.
    raise InvalidTransition(
        current.status, changes.get("status", current.status), allowed_targets(current.status)
    )


def set_output(
    run_id, output: Any, *, complete: bool, actor: Actor = SYSTEM, scope=None, if_match=None
) -> TaskRun:
    """Replace a run's output (already validated against its task's schema). With ``complete``,
    a non-terminal run also moves to ``completed`` when the transition table allows it."""
    with transaction.atomic():
        run = lock_run(run_id, scope, if_match)
        run.output = output
        history = [Change(Kind.OUTPUT_SET)]
        if complete and not is_terminal(run.status) and is_allowed(run.status, TaskRunStatus.COMPLETED):
            history += _move_status(run, TaskRunStatus.COMPLETED, timezone.now())
        _commit(run, history, actor)
    return run


def resume_in_cloud(run_id, actor: Actor = SYSTEM, *, scope=None, if_match=None) -> TaskRun:
    """Move a run into cloud as ``queued``, even out of a terminal status, and start its worker.

    The host's CLOUD_STARTER runs inside the transaction: if it raises, nothing is written.
    """
    with transaction.atomic():
        run = lock_run(run_id, scope, if_match)
        if run.environment == TaskRunEnvironment.CLOUD and run.status in (
            TaskRunStatus.QUEUED,
            TaskRunStatus.IN_PROGRESS,
        ):
            raise AlreadyActiveInCloud(current_status=run.status)
        removed = [key for key in app_settings.RESUME_CLEAR_STATE_KEYS if key in run.state]
        history = _move_status(run, TaskRunStatus.QUEUED, timezone.now())
        history += _move_environment(run, TaskRunEnvironment.CLOUD)
        history.append(Change(Kind.RESUMED_IN_CLOUD, keys_removed=removed))
        run.completed_at = None
        run.error_message = None
        for key in removed:
            del run.state[key]
        _commit(run, history, actor)
        starter = app_settings.import_from("CLOUD_STARTER")
        if starter is not None:
            try:
                starter(run)
            except Exception as exc:
                logger.exception("cloud starter failed for run %s", run.pk)
                raise CloudStartFailed() from exc
    return run


def append_log(run: TaskRun, entries: list[dict], if_match=None) -> int:
    """Append entries, in order, to a run's log. Of the run row only its count of log entries
    changes (not its version): counted and checked against the limit in one statement, so
    concurrent appends cannot pass the limit together."""
    _check_version(run, if_match)
    limit = app_settings.LOG_MAX_ENTRIES_PER_RUN
    with transaction.atomic():
        counted = TaskRun.objects.filter(pk=run.pk, log_entry_count__lte=limit - len(entries)).update(
            log_entry_count=F("log_entry_count") + len(entries)
        )
        if not counted:
            raise LogFull(limit=limit)
        TaskRunLogEntry.objects.bulk_create(TaskRunLogEntry(run=run, entry=entry) for entry in entries)
    run.log_entry_count += len(entries)
    return len(entries)


def lock_run(run_id, scope=None, if_match=None) -> TaskRun:
    """Read the latest row of a run in ``scope``, locked against other writers until the
    transaction ends. Raises NotFound out of scope, PreconditionFailed on an ``If-Match`` miss."""
    runs = TaskRun.objects.select_related("task")
    if scope is not None:
        runs = runs.filter(pk__in=scope.runs().values("pk"))
    if connection.features.has_select_for_update:
        of = ("self",) if connection.features.has_select_for_update_of else ()
        runs = runs.select_for_update(of=of)
    else:
        # SQLite has no row locks. Writing first takes its database-wide write lock, so no
        # other writer can read-modify-write between our read and our save.
        TaskRun.objects.filter(pk=run_id).update(version=F("version"))
    run = runs.filter(pk=run_id).first()
    if run is None:
        raise NotFound()
    _check_version(run, if_match)
    return run


def _check_version(run: TaskRun, if_match) -> None:
    if if_match is not None and run.version not in if_match:
        raise PreconditionFailed(run)


def apply_changes(run: TaskRun, changes: Mapping[str, Any]) -> None:
    """Apply a PATCH to the in-memory ``run`` following the transition rules.

    Raises InvalidTransition before touching anything when a move is not allowed.
    """
    target_status = changes.get("status", run.status)
    if not is_allowed(run.status, target_status):
        raise InvalidTransition(run.status, target_status, allowed_targets(run.status))
    target_environment = changes.get("environment", run.environment)
    if target_environment != run.environment and is_terminal(run.status):
        raise InvalidTransition(run.status, target_environment, [], field="environment")

    _move_status(run, target_status, timezone.now())
    run.environment = target_environment
    for name in ("stage", "branch", "error_message"):
        if name in changes:
            setattr(run, name, changes[name])
    if "output" in changes:
        run.output = merged_output(run.output, changes["output"])
    if changes.get("state") or changes.get("state_remove_keys"):
        state = merged_state(run.state, changes.get("state") or {}, changes.get("state_remove_keys") or [])
        if state_size(state) > app_settings.MAX_STATE_BYTES:
            raise StateTooLarge(limit=app_settings.MAX_STATE_BYTES)
        run.state = state


def history_of(
    changes: Mapping[str, Any], old_status: str, old_environment: str, run: TaskRun
) -> list[Change]:
    """The events a PATCH makes: a status and/or an environment change, each naming the state
    keys the same PATCH set and removed."""
    history = []
    if run.status != old_status:
        history.append(Change(Kind.STATUS_CHANGED, old=old_status, new=run.status))
    if run.environment != old_environment:
        history.append(Change(Kind.ENVIRONMENT_CHANGED, old=old_environment, new=run.environment))
    for change in history:
        change.keys_set = sorted(changes.get("state") or {})
        change.keys_removed = list(changes.get("state_remove_keys") or [])
    return history


def state_size(state: Mapping[str, Any]) -> int:
    """The size MAX_STATE_BYTES limits, as measured off PostgreSQL: the state as JSON text, in
    UTF-8 bytes. (On PostgreSQL the one-statement PATCH measures the jsonb value itself, with
    pg_column_size, which is cheaper inside the row lock; the two agree to a few percent.)"""
    return len(json.dumps(state, ensure_ascii=False, separators=(", ", ": ")).encode())


def merged_output(stored: Any, sent: Any) -> Any:
    """An object is shallow-merged into the stored output (a non-object counts as {});
    null clears it; any other JSON value replaces it."""
    if isinstance(sent, dict):
        return {**(stored if isinstance(stored, dict) else {}), **sent}
    return sent


def merged_state(stored: Any, sent: Mapping[str, Any], remove_keys) -> dict[str, Any]:
    """Remove ``remove_keys``, then shallow-merge ``sent``: a key both removed and sent keeps
    the sent value."""
    state = dict(stored) if isinstance(stored, dict) else {}
    for key in remove_keys:
        state.pop(key, None)
    state.update(sent)
    return state


def _move_status(run: TaskRun, target: str, now) -> list[Change]:
    """Set the status and its timestamps; the caller has checked the move is allowed."""
    if target == run.status:
        return []
    change = Change(Kind.STATUS_CHANGED, old=run.status, new=target)
    run.status = target
    if target == TaskRunStatus.IN_PROGRESS and run.started_at is None:
        run.started_at = now
    if is_terminal(target) and run.completed_at is None:
        run.completed_at = now
    return [change]


def _move_environment(run: TaskRun, target: str) -> list[Change]:
    if target == run.environment:
        return []
    change = Change(Kind.ENVIRONMENT_CHANGED, old=run.environment, new=target)
    run.environment = target
    return [change]


def _commit(run: TaskRun, history: list[Change], actor: Actor, bump: bool = True) -> None:
    """Save the row (bumping its version), record the history, queue the signals."""
    if bump:
        run.version += 1
        run.save()
    record(run, history, actor)
    _announce_on_commit(run, history)


def _announce_on_commit(run: TaskRun, history: list[Change]) -> None:
    if history:
        transaction.on_commit(lambda: _announce(run, history))


SIGNALS = {
    Kind.CREATED: (signals.run_created, None),
    Kind.STATUS_CHANGED: (signals.run_status_changed, "status"),
    Kind.ENVIRONMENT_CHANGED: (signals.run_environment_changed, "environment"),
    Kind.RESUMED_IN_CLOUD: (signals.run_resumed_in_cloud, None),
}


def _announce(run: TaskRun, history: list[Change]) -> None:
    for change in history:
        if change.kind not in SIGNALS:
            continue
        signal, field = SIGNALS[change.kind]
        kwargs = {f"old_{field}": change.old, f"new_{field}": change.new} if field else {}
        for receiver, result in signal.send_robust(sender=TaskRun, run=run, **kwargs):
            if isinstance(result, Exception):
                logger.error(
                    "taskruns signal receiver %r failed for run %s", receiver, run.pk, exc_info=result
                )
