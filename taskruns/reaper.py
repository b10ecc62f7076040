"""The reaper: ends the runs whose executor died (design §12).

A run is stale when it is in progress with a ``heartbeat_timeout`` and silent for longer than
that, or queued for longer than ``TASKRUNS["QUEUED_TTL"]`` (taskruns.rules.stale says which,
in one place). ``reap()`` finds them oldest first, in bounded batches, through the partial
indexes of the runs that can be stale (so the finished runs are never read), asks the host's
``TASKRUNS["LIVENESS_CHECK"]`` whether to keep each one, and ends the others one by one through
the write path (taskruns.updates.reap_run): each is a compare-and-set that re-checks staleness
on the locked row and skips a row another transaction holds, so a run that finished, moved or
heartbeated meanwhile keeps that write, and several reapers may run at once without reaping a
run twice or making a writer wait.

Schedule it: ``manage.py taskruns_reap`` from cron every minute is the baseline; a Celery beat
entry (or any periodic scheduler) calling ``reap()`` works the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from . import rows, rules, updates
from .conf import app_settings
from .history import SYSTEM, Actor
from .models import TaskRun

logger = logging.getLogger(__name__)

#: Candidates read per query.
BATCH_SIZE = 500


@dataclass
class Reaping:
    """What one pass of the reaper found and did."""

    #: Every stale run found, in the order considered (with ``dry_run``, what would be reaped).
    found: list[TaskRun] = field(default_factory=list)
    reaped: list[TaskRun] = field(default_factory=list)
    #: Kept because the liveness check said the executor is alive (or could not tell).
    kept: list[TaskRun] = field(default_factory=list)
    #: No longer stale when claimed, or held by another writer or reaper: left alone.
    skipped: list[TaskRun] = field(default_factory=list)


def stale_runs(now: datetime) -> QuerySet[TaskRun]:
    """The runs stale at ``now``, oldest first (by when they entered their status)."""
    runs = TaskRun.objects.using(rows.database_of(TaskRun)).filter(rules.stale(now))
    return runs.order_by("status_changed_at", "id")


def reap(
    *,
    now: datetime | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    among: QuerySet[TaskRun] | None = None,
    actor: Actor = SYSTEM,
    batch_size: int = BATCH_SIZE,
) -> Reaping:
    """End the runs stale at ``now`` (default: now), at most ``limit`` of them, ``among`` some
    runs only (the admin's selection) or all; with ``dry_run``, only find them."""
    now = now or timezone.now()
    check = app_settings.import_from("LIVENESS_CHECK")
    candidates = stale_runs(now)
    if among is not None:
        candidates = candidates.filter(pk__in=among.values("pk"))
    result = Reaping()
    after: Q = Q()
    while limit is None or len(result.found) < limit:
        size = batch_size if limit is None else min(batch_size, limit - len(result.found))
        batch = list(candidates.filter(after)[:size])
        if not batch:
            break
        last = batch[-1]
        # Keyset paging: a run that is kept or skipped stays stale and must not be found again.
        after = Q(status_changed_at__gt=last.status_changed_at) | Q(
            status_changed_at=last.status_changed_at, id__gt=last.id
        )
        for run in batch:
            result.found.append(run)
            if dry_run:
                continue
            if _alive(check, run):
                result.kept.append(run)
                continue
            reaped = updates.reap_run(run.pk, now, actor)
            (result.skipped if reaped is None else result.reaped).append(reaped or run)
    return result


def _alive(check: Any, run: TaskRun) -> bool:
    """The host's liveness check's verdict; a check that fails keeps the run (unknown is not
    dead: reaping a live run would run it twice)."""
    if check is None:
        return False
    try:
        return bool(check(run))
    except Exception:
        logger.exception("taskruns liveness check failed for run %s; keeping it", run.pk)
        return True
