"""A PATCH on PostgreSQL as one ``UPDATE … RETURNING`` statement: the PostgreSQL executor of
the rule book's plan (taskruns.rules.Plan), which decides nothing itself.

The row lock is taken and released by the database within the statement's own work: key
removal and shallow merge are jsonb operators (``state - keys || sent``), the transition rule
is a condition on the current status (the sources the table allows for the target), and the
version bump, ``started_at``, ``completed_at``, ``status_changed_at`` and the lifecycle's
clearing of a cancel request and an error code are set in the same statement. Nothing is
read into Python and written back, so writers to one run queue only for the statement itself.

The statement returns no row when the run is out of scope, the move is not allowed, or an
``If-Match`` version does not hold; taskruns.updates then finds out which, with the same rules
as the Python path. A merged state over the size limit ends it with an error instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connections, transaction

from . import rows, waits
from .access import RunScope
from .exceptions import OutputTooLarge, StateTooLarge
from .history import Actor
from .models import TaskRun, TaskRunEvent
from .rules import OutputChange, Plan
from .transitions import TERMINAL_STATUSES

RUN = TaskRun._meta.db_table
EVENT = TaskRunEvent._meta.db_table
# Made by migration 0005 (measure of 0008): the merged state, or an error with this SQLSTATE when
# it is larger than the limit as the rule book measures it (taskruns.rules.state_size).
STATE_WITHIN = "taskruns_state_within"
STATE_TOO_LARGE = "TR413"
# Made by migration 0011: the same measure and limit check for the merged output.
OUTPUT_WITHIN = "taskruns_output_within"
OUTPUT_TOO_LARGE = "TR414"


def patch_statement(
    run_id: Any,
    plan: Plan,
    *,
    scope: RunScope | None,
    if_match: Iterable[int] | None,
    now: datetime,
    actor: Actor,
    using: str,
) -> tuple[str, list[Any]]:
    """The SQL and parameters of the one-statement PATCH of ``run_id`` within ``scope``,
    history rows included.

    A PATCH that moves neither status nor environment is a plain ``UPDATE … WHERE``: PostgreSQL
    re-checks its conditions and recomputes its values on the newest row if another writer got
    there first, so nothing is lost, and it plans in about half the time of the other shape.
    A move is recorded with the value it moved from, which an UPDATE cannot return: that shape
    first locks the row in a CTE (``old``) and updates from it."""
    sets: list[str] = ["version = run.version + 1", "updated_at = %s"]
    params: list[Any] = [now]
    conditions: list[str] = []
    condition_params: list[Any] = []

    if plan.status is not None:
        target = plan.status
        sets += [
            "status = %s",
            "started_at = CASE WHEN run.status <> %s AND %s AND run.started_at IS NULL "
            "THEN %s ELSE run.started_at END",
            "completed_at = CASE WHEN run.status <> %s AND %s AND run.completed_at IS NULL "
            "THEN %s ELSE run.completed_at END",
            "status_changed_at = CASE WHEN run.status <> %s THEN %s ELSE run.status_changed_at END",
            "cancel_requested_at = CASE WHEN run.status <> %s AND %s THEN NULL "
            "ELSE run.cancel_requested_at END",
            "error_code = CASE WHEN run.status <> %s AND %s THEN NULL ELSE run.error_code END",
        ]
        params += [target, target, plan.starts, now]
        params += [target, plan.completes, now]
        params += [target, now]
        params += [target, plan.restarts, target, plan.restarts]
        conditions.append("run.status = ANY(%s)")
        condition_params.append(plan.status_sources)
    if plan.environment is not None:
        sets.append("environment = %s")
        params.append(plan.environment)
        # A terminal run's environment is final; rewriting the same value is a no-op.
        conditions.append("(run.environment = %s OR NOT run.status = ANY(%s))")
        condition_params += [plan.environment, sorted(TERMINAL_STATUSES)]
    for name, value in plan.fields.items():
        sets.append(f"{name} = %s")
        params.append(value)
    if plan.output is not None:
        if plan.output.kind == OutputChange.MERGE:
            sets.append(
                f"output = {OUTPUT_WITHIN}(CASE WHEN jsonb_typeof(run.output) = 'object' "
                "THEN run.output || %s::jsonb ELSE %s::jsonb END, %s)"
            )
            params += [_jsonb(plan.output.value), _jsonb(plan.output.value), plan.max_output_bytes]
        elif plan.output.kind == OutputChange.CLEAR:
            sets.append("output = NULL")
        else:
            sets.append(f"output = {OUTPUT_WITHIN}(%s::jsonb, %s)")
            params += [_jsonb(plan.output.value), plan.max_output_bytes]
    if plan.changes_state:
        merged, merged_params = _merged_state(plan)
        # Measured as the rule book measures it; too large ends the statement (STATE_TOO_LARGE).
        sets.append(f"state = {STATE_WITHIN}({merged}, %s)")
        params += [*merged_params, plan.max_state_bytes]
    if if_match is not None:
        conditions.append("run.version = ANY(%s)")
        condition_params.append(sorted(if_match))

    columns = rows.columns(TaskRun, "run", using)
    where = "".join(f" AND {condition}" for condition in conditions)
    # Set before the row is locked: the longest this statement waits for another writer.
    lock_limit, lock_limit_params = waits.lock_timeout_condition(using)
    if not plan.moves:
        scope_sql, scope_params = scope.sql("run", using) if scope is not None else ("TRUE", [])
        sql = (
            f"UPDATE {RUN} AS run SET {', '.join(sets)} "
            f"WHERE run.id = %s AND {scope_sql} AND {lock_limit}{where} "
            f"RETURNING {columns}, run.status AS old_status, run.environment AS old_environment"
        )
        return sql, [*params, run_id, *scope_params, *lock_limit_params, *condition_params]

    scope_sql, scope_params = scope.sql("locked", using) if scope is not None else ("TRUE", [])
    scope_params = [*scope_params, *lock_limit_params]
    history_sql, history_params = _history_insert(plan, now, actor, using)
    sql = (
        f"WITH old AS (SELECT id, status, environment FROM {RUN} AS locked "
        f"WHERE id = %s AND {scope_sql} AND {lock_limit} FOR UPDATE), "
        f"updated AS (UPDATE {RUN} AS run SET {', '.join(sets)} FROM old WHERE run.id = old.id{where} "
        f"RETURNING {columns}, old.status AS old_status, old.environment AS old_environment), "
        f"history AS ({history_sql}) SELECT * FROM updated"
    )
    return sql, [run_id, *scope_params, *params, *condition_params, *history_params]


def _merged_state(plan: Plan) -> tuple[str, list[Any]]:
    """The run's state after the plan, as an expression on ``run.state``: keys removed, then
    the sent object merged, then the appended items. (No ``- keys`` without keys: even an empty
    removal costs time on a large state.)"""
    sent = _jsonb(dict(plan.state_merge))
    if plan.state_remove:
        merged, params = "(run.state - %s::text[]) || %s::jsonb", [list(plan.state_remove), sent]
    else:
        merged, params = "run.state || %s::jsonb", [sent]
    for key, item in plan.state_append.items():
        value, value_params = _appended(plan, key, item)
        merged = f"({merged}) || jsonb_build_object(%s::text, {value})"
        params += [key, *value_params]
    return merged, params


def _appended(plan: Plan, key: str, item: Any) -> tuple[str, list[Any]]:
    """A key's value after ``state_append`` (taskruns.rules.appended), in SQL. Its value before
    is known to the plan where the same PATCH merged or removed the key; else it is the row's.
    ``jsonb_build_array(item)`` keeps a list item one item (``||`` would splice it), and a unique
    key's duplicate is found with ``jsonb =``, JSON's equality (taskruns.rules.json_equal)."""
    if key in plan.state_merge:
        base, base_params = "%s::jsonb", [_jsonb(plan.state_merge[key])]
    elif key in plan.state_remove:
        base, base_params = "NULL::jsonb", []
    else:
        base, base_params = "(run.state -> %s::text)", [key]
    unique = key in plan.unique_append_keys
    items = (
        f"(CASE WHEN {base} IS NULL OR jsonb_typeof({base}) = 'null' THEN '[]'::jsonb "
        f"WHEN jsonb_typeof({base}) = 'array' THEN {base} ELSE jsonb_build_array({base}) END)"
    )
    items_params = base_params * 5
    item_sql, item_params = "%s::jsonb", [_jsonb(item)]
    if not unique:
        return f"{items} || jsonb_build_array({item_sql})", [*items_params, *item_params]
    present = f"EXISTS (SELECT 1 FROM jsonb_array_elements({items}) AS existing WHERE existing = {item_sql})"
    sql = f"CASE WHEN {present} THEN {items} ELSE {items} || jsonb_build_array({item_sql}) END"
    return sql, [*items_params, *item_params, *items_params, *items_params, *item_params]


def _history_insert(plan: Plan, now: datetime, actor: Actor, using: str) -> tuple[str, list[Any]]:
    """INSERT … SELECT of one event per moved column, from the ``updated`` row; the same
    fields as taskruns.history.record writes on the other path (taskruns.rules.history)."""
    keys_set = _jsonb(plan.keys_set)
    keys_removed = _jsonb(plan.keys_removed)
    user_id = getattr(actor.user, "pk", None)
    api_key_id = actor.api_key.pk if actor.api_key else None
    # The type of the host's user model's key (integer, bigint, uuid…), for the NULL it may be.
    user_key = TaskRunEvent._meta.get_field("actor_user").rel_db_type(connections[using])
    selects, params = [], []
    for kind, column in plan.moves:
        selects.append(
            f"SELECT id, %s, old_{column}, {column}, %s::jsonb, %s::jsonb, %s::{user_key}, %s::bigint, "
            f"%s, %s FROM updated WHERE {column} <> old_{column}"
        )
        params += [kind, keys_set, keys_removed, user_id, api_key_id, actor.via, now]
    columns = "run_id, kind, from_value, to_value, state_keys_set, state_keys_removed, "
    columns += "actor_user_id, actor_api_key_id, via, created_at"
    return f"INSERT INTO {EVENT} ({columns}) " + " UNION ALL ".join(selects), params


def patch_in_one_statement(
    run_id: Any,
    plan: Plan,
    *,
    scope: RunScope | None,
    if_match: Iterable[int] | None,
    now: datetime,
    actor: Actor,
    using: str,
) -> tuple[TaskRun, str, str] | None:
    """Run the statement; the updated run with the status and environment it had before, or
    None when no row qualified. Raises StateTooLarge, having
    written nothing, when the merged state is over the limit."""
    sql, params = patch_statement(
        run_id, plan, scope=scope, if_match=if_match, now=now, actor=actor, using=using
    )
    try:
        # Inside a transaction, a savepoint keeps the caller's transaction usable after the
        # statement fails; in autocommit (a request) the statement is its own transaction.
        in_transaction = connections[using].in_atomic_block
        savepoint = transaction.atomic(using=using) if in_transaction else nullcontext()
        with savepoint:
            row = rows.fetch_one(sql, params, using)
    except DatabaseError as exc:
        sqlstate = getattr(exc.__cause__, "sqlstate", None)
        if sqlstate == STATE_TOO_LARGE:
            raise StateTooLarge(limit=plan.max_state_bytes) from None
        if sqlstate == OUTPUT_TOO_LARGE:
            raise OutputTooLarge(limit=plan.max_output_bytes) from None
        raise
    if row is None:
        return None
    width = rows.width(TaskRun)
    old_status, old_environment = row[width:]
    return rows.instance(TaskRun, row[:width], using), old_status, old_environment


def _jsonb(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
