"""End the runs whose executor died: in progress past their heartbeat timeout, or queued past
TASKRUNS["QUEUED_TTL"] (taskruns.reaper). Meant for cron, e.g. every minute:

    * * * * *  cd /srv/app && python manage.py taskruns_reap
    manage.py taskruns_reap --dry-run          # list what would be reaped, change nothing
    manage.py taskruns_reap --limit 1000       # at most this many runs in one pass
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from taskruns.reaper import reap


class Command(BaseCommand):
    help = "Fail stale task runs (no heartbeat within their timeout, or queued too long)."

    def add_arguments(self, parser: Any) -> Any:
        parser.add_argument("--dry-run", action="store_true", help="List the stale runs; change nothing.")
        parser.add_argument("--limit", type=int, help="Consider at most this many stale runs.")

    def handle(self, *args: Any, dry_run: bool, limit: int | None, **options: Any) -> Any:
        if limit is not None and limit < 1:
            raise CommandError("--limit must be a positive number.")
        result = reap(limit=limit, dry_run=dry_run)
        if dry_run:
            for run in result.found:
                self.stdout.write(f"would reap {run.pk} ({run.status}, task {run.task_id})")
            self.stdout.write(f"{len(result.found)} stale runs found; nothing changed (--dry-run).")
            return
        for run in result.reaped:
            self.stdout.write(f"reaped {run.pk}: {run.error_code}")
        for run in result.kept:
            self.stdout.write(f"kept {run.pk}: the liveness check says it is alive")
        for run in result.skipped:
            self.stdout.write(f"skipped {run.pk}: it changed or another writer holds it")
        self.stdout.write(
            f"{len(result.reaped)} reaped, {len(result.kept)} kept, {len(result.skipped)} skipped "
            f"of {len(result.found)} stale runs found."
        )
