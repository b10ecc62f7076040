"""How long one PATCH keeps a run's row locked, measured in-process with a single client.

Writers to one run take turns on its row lock, so the time a write holds it bounds that run's
writes per second however many cores serve them; on the bench's 2 cores CPU runs out first,
which is why this is measured apart from the load scenarios. The lock is held from the moment
the statement that takes it is sent until the transaction's COMMIT returns: for a statement in
autocommit (taskruns, the floor) that is the statement's round trip; for a transaction
(PostHog-style) it spans the SELECT … FOR UPDATE, the Python between, the UPDATE and the COMMIT.
"""

from __future__ import annotations

import json
import statistics
import time

from django.db import connection, transaction
from django.test import Client

from taskruns.models import TaskRun

STATE_KEYS = 1000
WRITES = 200


def lock_hold_times(data: dict, path_templates: dict[str, str]) -> list[dict]:
    """For each target, the row lock time of WRITES PATCHes, each adding a key to a run that
    starts with STATE_KEYS keys: its median and 90th percentile in ms."""
    client = Client(HTTP_AUTHORIZATION=f"Bearer {data['key']}")
    results = []
    for target, template in path_templates.items():
        run = TaskRun.objects.create(
            task_id=data["task"], project_id=data["project"], state={f"k{i}": i for i in range(STATE_KEYS)}
        )
        path = template.format(project=data["project"], task=data["task"], run=run.pk)
        held: list[float] = []
        with connection.execute_wrapper(_LockTimer(held)):
            for i in range(WRITES):
                body = json.dumps({"state": {f"added{i}": i}})
                response = client.patch(path, body, content_type="application/json")
                assert response.status_code == 200, response.content
        assert len(held) == WRITES, (target, len(held))
        cuts = statistics.quantiles(held, n=10)
        results.append({"target": target, "p50": statistics.median(held), "p90": cuts[-1]})
    return results


class _LockTimer:
    """A Django execute wrapper timing each interval from a statement that locks the run's
    row to the end of its transaction."""

    def __init__(self, held: list[float]):
        self.held = held
        self.locked_since: float | None = None

    def __call__(self, execute, sql, params, many, context):
        starts = self.locked_since is None and _locks_a_run(sql)
        if starts:
            self.locked_since = time.perf_counter()
        result = execute(sql, params, many, context)
        if starts:
            if connection.get_autocommit():
                self._release()
            else:
                transaction.on_commit(self._release)
        return result

    def _release(self) -> None:
        self.held.append((time.perf_counter() - self.locked_since) * 1000)
        self.locked_since = None


def _locks_a_run(sql: str) -> bool:
    text = sql.lstrip().upper()
    return TaskRun._meta.db_table.upper() in text and ("FOR UPDATE" in text or text.startswith("UPDATE"))
