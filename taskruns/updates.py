"""Every write to a run goes through here: PATCH, run actions, the admin and internal code.

A change is applied to the latest stored row under a row lock, inside one transaction, so
that concurrent writers never lose each other's keys and a rejected change leaves the row as
it was. Signals are queued and sent only after the transaction commits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone

from . import signals
from .conf import app_settings
from .exceptions import AlreadyActiveInCloud, CloudStartFailed, InvalidTransition
from .models import Task, TaskRun, TaskRunEnvironment, TaskRunStatus
from .transitions import allowed_targets, is_allowed, is_terminal

logger = logging.getLogger(__name__)

Announcement = tuple[Signal, dict[str, Any]]

#: The fields a PATCH may carry, as validated by TaskRunUpdateSerializer.
PATCH_FIELDS = (
    "status",
    "environment",
    "stage",
    "branch",
    "error_message",
    "output",
    "state",
    "state_remove_keys",
)


def create_run(
    task: Task, *, status: str = TaskRunStatus.QUEUED, environment: str = TaskRunEnvironment.LOCAL
):
    """Create a run of ``task`` and announce it once committed."""
    with transaction.atomic():
        run = TaskRun.objects.create(
            task=task, project_id=task.project_id, status=status, environment=environment
        )
        _announce_on_commit(run, [(signals.run_created, {})])
    return run


def update_run(run_id, changes: Mapping[str, Any]) -> TaskRun:
    """Apply a validated PATCH (any subset of PATCH_FIELDS) to the latest row of a run.

    Raises InvalidTransition (nothing written) when the status or environment move is not
    allowed, and TaskRun.DoesNotExist when the run is gone.
    """
    with transaction.atomic():
        run = lock_run(run_id)
        announcements = apply_changes(run, changes)
        save_run(run)
        _announce_on_commit(run, announcements)
    return run


def resume_in_cloud(run_id) -> TaskRun:
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
        old_status, old_environment = run.status, run.environment
        run.status = TaskRunStatus.QUEUED
        run.environment = TaskRunEnvironment.CLOUD
        run.completed_at = None
        run.error_message = None
        for key in app_settings.RESUME_CLEAR_STATE_KEYS:
            run.state.pop(key, None)
        save_run(run)
        starter = app_settings.import_from("CLOUD_STARTER")
        if starter is not None:
            try:
                starter(run)
            except Exception as exc:
                logger.exception("cloud starter failed for run %s", run.pk)
                raise CloudStartFailed() from exc
        announcements = _status_and_environment_announcements(run, old_status, old_environment)
        announcements.append((signals.run_resumed_in_cloud, {}))
        _announce_on_commit(run, announcements)
    return run


def lock_run(run_id) -> TaskRun:
    """Read the latest row of a run, locked against other writers until the transaction ends."""
    if connection.features.has_select_for_update:
        return TaskRun.objects.select_for_update().get(pk=run_id)
    # SQLite has no row locks. Writing first takes its database-wide write lock, so no other
    # writer can read-modify-write between our read and our save.
    TaskRun.objects.filter(pk=run_id).update(version=F("version"))
    return TaskRun.objects.get(pk=run_id)


def apply_changes(run: TaskRun, changes: Mapping[str, Any]) -> list[Announcement]:
    """Apply ``changes`` to the in-memory ``run`` following the transition rules.

    Raises InvalidTransition before touching anything when a move is not allowed, and returns
    the announcements to send once the change is committed.
    """
    old_status, old_environment = run.status, run.environment
    _check_moves(run, changes)
    now = timezone.now()

    if "status" in changes and changes["status"] != run.status:
        run.status = changes["status"]
        if run.status == TaskRunStatus.IN_PROGRESS and run.started_at is None:
            run.started_at = now
        if is_terminal(run.status) and run.completed_at is None:
            run.completed_at = now
    if "environment" in changes:
        run.environment = changes["environment"]
    for field in ("stage", "branch", "error_message"):
        if field in changes:
            setattr(run, field, changes[field])
    if "output" in changes:
        run.output = merged_output(run.output, changes["output"])
    if "state_remove_keys" in changes or "state" in changes:
        run.state = merged_state(
            run.state, changes.get("state") or {}, changes.get("state_remove_keys") or ()
        )
    return _status_and_environment_announcements(run, old_status, old_environment)


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


def save_run(run: TaskRun) -> None:
    """Write the whole row, bumping its version."""
    run.version += 1
    run.save()


def _check_moves(run: TaskRun, changes: Mapping[str, Any]) -> None:
    target = changes.get("status", run.status)
    if not is_allowed(run.status, target):
        raise InvalidTransition(run.status, target, allowed_targets(run.status))
    environment = changes.get("environment", run.environment)
    if environment != run.environment and is_terminal(run.status):
        raise InvalidTransition(run.status, environment, [], field="environment")


def _status_and_environment_announcements(run, old_status, old_environment) -> list[Announcement]:
    announcements: list[Announcement] = []
    if run.status != old_status:
        announcements.append(
            (signals.run_status_changed, {"old_status": old_status, "new_status": run.status})
        )
    if run.environment != old_environment:
        announcements.append(
            (
                signals.run_environment_changed,
                {"old_environment": old_environment, "new_environment": run.environment},
            )
        )
    return announcements


def _announce_on_commit(run: TaskRun, announcements: list[Announcement]) -> None:
    if announcements:
        transaction.on_commit(lambda: _announce(run, announcements))


def _announce(run: TaskRun, announcements: list[Announcement]) -> None:
    for signal, kwargs in announcements:
        for receiver, result in signal.send_robust(sender=TaskRun, run=run, **kwargs):
            if isinstance(result, Exception):
                logger.error(
                    "taskruns signal receiver %r failed for run %s", receiver, run.pk, exc_info=result
                )
