"""Every write to a run goes through here: PATCH, run actions, the admin and internal code.

A change is applied to the latest stored row under a row lock, inside one transaction, so
that concurrent writers never lose each other's keys and a rejected change leaves the row as
it was. The change is recorded in the run's history in the same transaction, and signals are
sent only after it commits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from . import signals
from .conf import app_settings
from .exceptions import AlreadyActiveInCloud, CloudStartFailed, InvalidTransition, LogFull
from .history import SYSTEM, Actor, Change, record
from .models import Task, TaskRun, TaskRunEnvironment, TaskRunEventKind, TaskRunLogEntry, TaskRunStatus
from .transitions import allowed_targets, is_allowed, is_terminal

logger = logging.getLogger(__name__)

Kind = TaskRunEventKind


def runs_with_log_flag():
    """Runs annotated with ``has_log``, which decides whether ``log_url`` is set."""
    return TaskRun.objects.annotate(has_log=Exists(TaskRunLogEntry.objects.filter(run=OuterRef("pk"))))


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
        run.has_log = False
        _commit(run, [Change(Kind.CREATED, new=status)], actor, bump=False)
    return run


def update_run(run_id, changes: Mapping[str, Any], actor: Actor = SYSTEM) -> TaskRun:
    """Apply a validated PATCH (any subset of TaskRunUpdateSerializer's fields) to the latest
    row of a run.

    Raises InvalidTransition (nothing written) when the status or environment move is not
    allowed, and TaskRun.DoesNotExist when the run is gone.
    """
    with transaction.atomic():
        run = lock_run(run_id)
        _commit(run, apply_changes(run, changes), actor)
    return run


def set_output(run_id, output: Any, *, complete: bool, actor: Actor = SYSTEM) -> TaskRun:
    """Replace a run's output (already validated against its task's schema). With ``complete``,
    a non-terminal run also moves to ``completed`` when the transition table allows it."""
    with transaction.atomic():
        run = lock_run(run_id)
        run.output = output
        history = [Change(Kind.OUTPUT_SET)]
        if complete and not is_terminal(run.status) and is_allowed(run.status, TaskRunStatus.COMPLETED):
            history += _move_status(run, TaskRunStatus.COMPLETED, timezone.now())
        _commit(run, history, actor)
    return run


def resume_in_cloud(run_id, actor: Actor = SYSTEM) -> TaskRun:
    """Move a run into cloud as ``queued``, even out of a terminal status, and start its worker.

    The host's CLOUD_STARTER runs inside the transaction: if it raises, nothing is written.
    """
    with transaction.atomic():
        run = lock_run(run_id)
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


def append_log(run: TaskRun, entries: list[dict]) -> int:
    """Append entries, in order, to a run's log; the run row itself is not written."""
    limit = app_settings.LOG_MAX_ENTRIES_PER_RUN
    if TaskRunLogEntry.objects.filter(run=run).count() + len(entries) > limit:
        raise LogFull(limit=limit)
    TaskRunLogEntry.objects.bulk_create(TaskRunLogEntry(run=run, entry=entry) for entry in entries)
    run.has_log = True
    return len(entries)


def lock_run(run_id) -> TaskRun:
    """Read the latest row of a run, locked against other writers until the transaction ends."""
    runs = runs_with_log_flag().select_related("task")
    if connection.features.has_select_for_update:
        of = ("self",) if connection.features.has_select_for_update_of else ()
        return runs.select_for_update(of=of).get(pk=run_id)
    # SQLite has no row locks. Writing first takes its database-wide write lock, so no other
    # writer can read-modify-write between our read and our save.
    TaskRun.objects.filter(pk=run_id).update(version=F("version"))
    return runs.get(pk=run_id)


def apply_changes(run: TaskRun, changes: Mapping[str, Any]) -> list[Change]:
    """Apply a PATCH to the in-memory ``run`` following the transition rules.

    Raises InvalidTransition before touching anything when a move is not allowed; returns
    what changed, for the history and the signals.
    """
    target_status = changes.get("status", run.status)
    if not is_allowed(run.status, target_status):
        raise InvalidTransition(run.status, target_status, allowed_targets(run.status))
    target_environment = changes.get("environment", run.environment)
    if target_environment != run.environment and is_terminal(run.status):
        raise InvalidTransition(run.status, target_environment, [], field="environment")

    history = _move_status(run, target_status, timezone.now()) + _move_environment(run, target_environment)
    for name in ("stage", "branch", "error_message"):
        if name in changes:
            setattr(run, name, changes[name])
    if "output" in changes:
        run.output = merged_output(run.output, changes["output"])
    sent_state, removed = changes.get("state") or {}, changes.get("state_remove_keys") or []
    if sent_state or removed:
        run.state = merged_state(run.state, sent_state, removed)
    for change in history:
        change.keys_set, change.keys_removed = sorted(sent_state), list(removed)
    return history


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
