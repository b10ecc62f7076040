"""Every write to a run goes through here: PATCH, run actions, the admin and internal code.

What a change does is the rule book's (taskruns.rules); how it reaches the row is the
executor's (taskruns.executors: one conditional statement on PostgreSQL, a locked row saved in
one transaction elsewhere), so that concurrent writers never lose each other's keys and a
rejected change leaves the row as it was. The change is recorded in the run's history in the
same transaction, and signals are sent only after it commits: this module is where that
announcement is made, for every kind of write.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.exceptions import NotFound

from . import rows, rules, signals, waits
from .access import RunScope
from .conf import app_settings
from .exceptions import CloudStartFailed, LogFull, RunNotInProgress, StateTooLarge
from .executors import Versions, check_version, claim_run, executor_for, lock_run, read_run
from .history import SYSTEM, Actor, Change, record
from .models import Task, TaskRun, TaskRunEnvironment, TaskRunEventKind, TaskRunLogEntry, TaskRunStatus
from .transitions import is_allowed, is_terminal
from .waits import write_transaction

__all__ = [
    "append_log",
    "cancel_run",
    "create_run",
    "heartbeat",
    "read_run",
    "reap_run",
    "resume_in_cloud",
    "set_output",
    "update_run",
]

logger = logging.getLogger(__name__)

Kind = TaskRunEventKind


#: ``create_run``'s heartbeat timeout when the caller names none: TASKRUNS["HEARTBEAT_TIMEOUT"].
FROM_SETTINGS: Any = object()


def create_run(
    task: Task,
    *,
    status: str = TaskRunStatus.QUEUED,
    environment: str = TaskRunEnvironment.LOCAL,
    heartbeat_timeout: int | None = FROM_SETTINGS,
    stage: str | None = None,
    branch: str | None = None,
    state: dict[str, Any] | None = None,
    actor: Actor = SYSTEM,
) -> TaskRun:
    """Create a run of ``task``, record it and announce it once committed. Its initial
    ``state`` is bounded like any merged state (StateTooLarge).

    ``heartbeat_timeout`` is in seconds; None: the run is never reaped for silence."""
    if heartbeat_timeout is FROM_SETTINGS:
        heartbeat_timeout = app_settings.HEARTBEAT_TIMEOUT
    state = state or {}
    if rules.state_size(state) > app_settings.MAX_STATE_BYTES:
        raise StateTooLarge(limit=app_settings.MAX_STATE_BYTES)
    # Nothing here waits for a row lock: a plain transaction, without the limits' round trip.
    with transaction.atomic(using=rows.database_of(TaskRun)):
        run = TaskRun.objects.create(
            task=task,
            project_id=task.project_id,
            status=status,
            environment=environment,
            stage=stage,
            branch=branch,
            state=state,
            heartbeat_timeout=None if heartbeat_timeout is None else timedelta(seconds=heartbeat_timeout),
        )
        _commit(run, [Change(Kind.CREATED, new=status)], actor, bump=False)
    return run


def update_run(
    run_id: Any,
    changes: Mapping[str, Any],
    actor: Actor = SYSTEM,
    *,
    scope: RunScope | None = None,
    if_match: Versions = None,
) -> TaskRun:
    """Apply a validated PATCH (any subset of TaskRunUpdateSerializer's fields) to the latest
    row of a run within ``scope`` (a RunScope; None: any run), by the rule book
    (taskruns.rules) through the database's executor (taskruns.executors).

    ``if_match`` is None or the set of versions the write is conditional on. Raises NotFound
    when the run is not in scope, PreconditionFailed when its version is not in ``if_match``,
    InvalidTransition when the status or environment move is not allowed, StateTooLarge; nothing
    is written then.
    """
    plan = rules.plan_for(changes)
    run, history = executor_for().patch(
        run_id, plan, scope=scope, if_match=if_match, now=timezone.now(), actor=actor
    )
    _announce_on_commit(run, history)
    return run


def set_output(
    run_id: Any,
    output: Any,
    *,
    complete: bool,
    actor: Actor = SYSTEM,
    scope: RunScope | None = None,
    if_match: Versions = None,
) -> TaskRun:
    """Replace a run's output (already validated against its task's schema). With ``complete``,
    a non-terminal run also moves to ``completed`` when the transition table allows it."""
    rules.check_output_size(output, app_settings.MAX_OUTPUT_BYTES)
    with write_transaction(rows.database_of(TaskRun)):
        run = lock_run(run_id, scope, if_match)
        run.output = output
        history = [Change(Kind.OUTPUT_SET)]
        if complete and not is_terminal(run.status) and is_allowed(run.status, TaskRunStatus.COMPLETED):
            history += rules.move_status(run, TaskRunStatus.COMPLETED, timezone.now())
        _commit(run, history, actor)
    return run


def resume_in_cloud(
    run_id: Any, actor: Actor = SYSTEM, *, scope: RunScope | None = None, if_match: Versions = None
) -> TaskRun:
    """Move a run into cloud as ``queued``, even out of a terminal status, and start its worker.

    The host's CLOUD_STARTER runs inside the transaction: if it raises, nothing is written.
    """
    with write_transaction(rows.database_of(TaskRun)):
        run = lock_run(run_id, scope, if_match)
        refused = rules.resume_refusal(run)
        if refused is not None:
            raise refused
        removed = [key for key in app_settings.RESUME_CLEAR_STATE_KEYS if key in run.state]
        now = timezone.now()
        history = rules.move_status(run, TaskRunStatus.QUEUED, now)
        history += rules.move_environment(run, TaskRunEnvironment.CLOUD)
        history.append(Change(Kind.RESUMED_IN_CLOUD, keys_removed=removed))
        # A new attempt in cloud, even for a run that was already queued locally: it is queued
        # from now, with nothing of the last attempt's cancel request or error code.
        run.status_changed_at = now
        rules.restart(run)
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


def cancel_run(
    run_id: Any,
    reason: str = "",
    actor: Actor = SYSTEM,
    *,
    scope: RunScope | None = None,
    if_match: Versions = None,
) -> TaskRun:
    """Cancel a run cooperatively (taskruns.rules.cancel): at once when no executor has it,
    else by recording the request its executor will see. A terminal run, or a request already
    made, is left as it is (nothing written, the version unchanged)."""
    with write_transaction(rows.database_of(TaskRun)):
        run = lock_run(run_id, scope, if_match)
        history = rules.cancel(run, reason, timezone.now())
        if history:
            _commit(run, history, actor)
    return run


@dataclass(frozen=True)
class Heartbeat:
    """What a heartbeat tells the executor: the run's status, version and whether to stop."""

    status: str
    version: int
    cancel_requested: bool


def heartbeat(run_id: Any, *, scope: RunScope | None = None) -> Heartbeat:
    """Record that the executor of an in-progress run is alive, in one statement.

    Only ``last_heartbeat_at`` is written: not the version, not ``updated_at`` (a heartbeat is
    not a change of the run, and a client's cached copy stays valid). Raises NotFound out of
    scope and RunNotInProgress when the run is in any other status: its executor must stop."""
    using = rows.database_of(TaskRun)
    connection = connections[using]
    scope_sql, scope_params = scope.sql("run", using) if scope is not None else ("TRUE", [])
    run_key = TaskRun._meta.pk.get_db_prep_value(run_id, connection)
    now = TaskRun._meta.get_field("last_heartbeat_at").get_db_prep_value(timezone.now(), connection)
    limit_sql, limit_params = waits.lock_timeout_condition(using)
    sql = (
        f"UPDATE {TaskRun._meta.db_table} AS run SET last_heartbeat_at = %s "
        f"WHERE run.id = %s AND run.status = %s AND {scope_sql} AND {limit_sql} "
        "RETURNING status, version, cancel_requested_at"
    )
    # One statement, its own transaction in autocommit: no BEGIN/COMMIT round trips around it.
    params = [now, run_key, rules.HEARTBEAT_STATUS, *scope_params, *limit_params]
    row = rows.fetch_one(sql, params, using)
    if row is not None:
        status, version, cancel_requested_at = row
        return Heartbeat(status, version, cancel_requested_at is not None)
    current = read_run(run_id, scope)
    if current is None:
        raise NotFound()
    raise RunNotInProgress(current.status)


def reap_run(run_id: Any, now: datetime, actor: Actor = SYSTEM) -> TaskRun | None:
    """End run ``run_id`` as stale (taskruns.rules.reap) if it still is at ``now``; None when
    it no longer is (it finished, heartbeated or moved meanwhile: that write wins) or another
    transaction holds it (another reaper, or a writer: skipped, not waited for)."""
    with write_transaction(rows.database_of(TaskRun)):
        run = claim_run(run_id, rules.stale(now))
        if run is None:
            return None
        _commit(run, rules.reap(run, now), actor)
    return run


def append_log(run: TaskRun, entries: list[dict[str, Any]], if_match: Versions = None) -> int:
    """Append entries, in order, to a run's log. Of the run row only its counts of log entries
    and bytes change (not its version): counted and checked against the limits in one
    statement, so concurrent appends cannot pass a limit together."""
    check_version(run, if_match)
    most_entries, most_bytes = app_settings.LOG_MAX_ENTRIES_PER_RUN, app_settings.LOG_MAX_BYTES_PER_RUN
    size = sum(rules.log_entry_size(entry) for entry in entries)
    with write_transaction(rows.database_of(TaskRun)):
        counted = TaskRun.objects.filter(
            pk=run.pk,
            log_entry_count__lte=most_entries - len(entries),
            log_byte_count__lte=most_bytes - size,
        ).update(
            log_entry_count=F("log_entry_count") + len(entries), log_byte_count=F("log_byte_count") + size
        )
        if not counted:
            raise LogFull(limit=most_entries, limit_bytes=most_bytes)
        TaskRunLogEntry.objects.bulk_create(TaskRunLogEntry(run=run, entry=entry) for entry in entries)
    run.log_entry_count += len(entries)
    run.log_byte_count += size
    return len(entries)


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
    Kind.CANCEL_REQUESTED: (signals.run_cancel_requested, None),
    Kind.REAPED: (signals.run_reaped, None),
}


def _announce(run: TaskRun, history: list[Change]) -> None:
    for change in history:
        kind = TaskRunEventKind(change.kind)
        if kind not in SIGNALS:
            continue
        signal, field = SIGNALS[kind]
        kwargs = {f"old_{field}": change.old, f"new_{field}": change.new} if field else {}
        for receiver, result in signal.send_robust(sender=TaskRun, run=run, **kwargs):
            if isinstance(result, Exception):
                logger.error(
                    "taskruns signal receiver %r failed for run %s", receiver, run.pk, exc_info=result
                )
