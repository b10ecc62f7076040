"""A PATCH on PostgreSQL as one ``UPDATE … RETURNING`` statement.

The row lock is taken and released by the database within the statement's own work: key
removal and shallow merge are jsonb operators (``state - keys || sent``), the transition rule
is a condition on the current status (the sources the table allows for the target), and the
version bump, ``started_at`` and ``completed_at`` are set in the same statement. Nothing is
read into Python and written back, so writers to one run queue only for the statement itself.

The statement returns no row when the run is out of scope, the move is not allowed, or an
``If-Match`` version does not hold; taskruns.updates then finds out which, with the same rules
as the Python path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import connection

from . import rows
from .access import RunScope
from .conf import app_settings
from .history import Actor
from .models import TaskRun, TaskRunEvent, TaskRunEventKind, TaskRunLogEntry, TaskRunStatus
from .transitions import TERMINAL_STATUSES, transition_table

RUN = TaskRun._meta.db_table
LOG = TaskRunLogEntry._meta.db_table
EVENT = TaskRunEvent._meta.db_table


def sources_allowing(target: str) -> list[str]:
    """The statuses from which writing ``target`` is accepted (itself included: a no-op)."""
    return [source for source, targets in transition_table().items() if source == target or target in targets]


def patch_statement(
    run_id,
    changes: Mapping[str, Any],
    *,
    scope: RunScope | None,
    if_match: Iterable[int] | None,
    now,
    actor: Actor,
) -> tuple[str, list[Any]]:
    """The SQL and parameters of the one-statement PATCH of ``run_id`` within ``scope``,
    history rows included."""
    old_columns, old_params = "id, status, environment", []
    sets: list[str] = ["version = run.version + 1", "updated_at = %s"]
    params: list[Any] = [now]
    conditions: list[str] = []
    condition_params: list[Any] = []

    if "status" in changes:
        target = changes["status"]
        sets += [
            "status = %s",
            "started_at = CASE WHEN run.status <> %s AND %s AND run.started_at IS NULL "
            "THEN %s ELSE run.started_at END",
            "completed_at = CASE WHEN run.status <> %s AND %s AND run.completed_at IS NULL "
            "THEN %s ELSE run.completed_at END",
        ]
        params += [target, target, target == TaskRunStatus.IN_PROGRESS, now]
        params += [target, target in TERMINAL_STATUSES, now]
        conditions.append("run.status = ANY(%s)")
        condition_params.append(sources_allowing(target))
    if "environment" in changes:
        sets.append("environment = %s")
        params.append(changes["environment"])
        # A terminal run's environment is final; rewriting the same value is a no-op.
        conditions.append("(run.environment = %s OR NOT run.status = ANY(%s))")
        condition_params += [changes["environment"], sorted(TERMINAL_STATUSES)]
    for name in ("stage", "branch", "error_message"):
        if name in changes:
            sets.append(f"{name} = %s")
            params.append(changes[name])
    if "output" in changes:
        sent = changes["output"]
        if isinstance(sent, dict):
            sets.append(
                "output = CASE WHEN jsonb_typeof(run.output) = 'object' THEN run.output || %s::jsonb "
                "ELSE %s::jsonb END"
            )
            params += [_jsonb(sent), _jsonb(sent)]
        elif sent is None:
            sets.append("output = NULL")
        else:
            sets.append("output = %s::jsonb")
            params.append(_jsonb(sent))
    remove_keys = list(changes.get("state_remove_keys") or [])
    if changes.get("state") or remove_keys:
        # Merged once, on the locked row, in the `old` CTE; measured as PostgreSQL holds it.
        # (No `- keys` without keys: even an empty removal costs time on a large state.)
        if remove_keys:
            old_columns += ", (state - %s::text[]) || %s::jsonb AS new_state"
            old_params.append(remove_keys)
        else:
            old_columns += ", state || %s::jsonb AS new_state"
        old_params.append(_jsonb(changes.get("state") or {}))
        sets.append("state = old.new_state")
        conditions.append("pg_column_size(old.new_state) <= %s")
        condition_params.append(app_settings.MAX_STATE_BYTES)
    if if_match is not None:
        conditions.append("run.version = ANY(%s)")
        condition_params.append(sorted(if_match))

    scope_sql, scope_params = scope.sql("locked") if scope is not None else ("TRUE", [])
    columns = rows.columns(TaskRun, "run")
    where = "".join(f" AND {condition}" for condition in conditions)
    sql = (
        f"WITH old AS (SELECT {old_columns} FROM {RUN} AS locked "
        f"WHERE id = %s AND {scope_sql} FOR UPDATE), "
        f"updated AS (UPDATE {RUN} AS run SET {', '.join(sets)} FROM old WHERE run.id = old.id{where} "
        f"RETURNING {columns}, old.status AS old_status, old.environment AS old_environment, "
        f"EXISTS (SELECT 1 FROM {LOG} WHERE {LOG}.run_id = run.id) AS has_log)"
    )
    all_params = [*old_params, run_id, *scope_params, *params, *condition_params]
    moves = [(kind, column) for kind, column in HISTORY_MOVES if column in changes]
    if moves:
        history_sql, history_params = _history_insert(moves, changes, now, actor)
        sql += f", history AS ({history_sql})"
        all_params += history_params
    return sql + " SELECT * FROM updated", all_params


#: The PATCH fields whose change is a history event, in the order the events are written.
HISTORY_MOVES = (
    (TaskRunEventKind.STATUS_CHANGED, "status"),
    (TaskRunEventKind.ENVIRONMENT_CHANGED, "environment"),
)


def _history_insert(moves, changes, now, actor: Actor) -> tuple[str, list[Any]]:
    """INSERT … SELECT of one event per moved column, from the ``updated`` row; the same
    fields as taskruns.history.record writes on the other path."""
    keys_set = _jsonb(sorted(changes.get("state") or {}))
    keys_removed = _jsonb(list(changes.get("state_remove_keys") or []))
    user_id = getattr(actor.user, "pk", None)
    api_key_id = actor.api_key.pk if actor.api_key else None
    selects, params = [], []
    for kind, column in moves:
        selects.append(
            f"SELECT id, %s, old_{column}, {column}, %s::jsonb, %s::jsonb, %s::bigint, %s::bigint, %s, %s "
            f"FROM updated WHERE {column} <> old_{column}"
        )
        params += [kind, keys_set, keys_removed, user_id, api_key_id, actor.via, now]
    columns = "run_id, kind, from_value, to_value, state_keys_set, state_keys_removed, "
    columns += "actor_user_id, actor_api_key_id, via, created_at"
    return f"INSERT INTO {EVENT} ({columns}) " + " UNION ALL ".join(selects), params


def patch_in_one_statement(run_id, changes, *, scope, if_match, now, actor: Actor) -> TaskRun | None:
    """Run the statement; the updated run (with ``old_status``, ``old_environment`` and
    ``has_log`` attributes), or None when no row qualified."""
    sql, params = patch_statement(run_id, changes, scope=scope, if_match=if_match, now=now, actor=actor)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    width = rows.width(TaskRun)
    run = rows.instance(TaskRun, row[:width])
    run.old_status, run.old_environment, run.has_log = row[width:]
    return run


def _jsonb(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
