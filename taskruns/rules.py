"""The rule book of a run: what a PATCH does to it and which PATCHes are refused, stated once.

Read this module first. A validated PATCH becomes a ``Plan`` (``plan_for``): the target status
and the statuses it may come from (the transition table, taskruns.transitions), the environment
move, the plain fields, how ``output`` and ``state`` change, the size limit. Two executors carry a
plan out (taskruns.executors): the Python one applies it to a locked row with ``apply``; the
PostgreSQL one turns the same plan into one ``UPDATE`` (taskruns.postgres), reading every choice
from the plan, never deciding one itself. tests/test_differential.py holds the two to the same
rows, the same errors and the same history on random sequences of PATCHes.

Everything a rule needs on the SQL side comes from here too: ``Plan.status_sources`` (the
transition rule as the set of statuses a target may be written from), ``TERMINAL_STATUSES`` (a
terminal run's environment is final), ``Plan.starts``/``Plan.completes`` (the timestamps), and
the state-size measure, which both executors take as the byte length of the state as
PostgreSQL's ``jsonb`` prints it (``state_size``; SQL: ``octet_length(state::text)``).

The run's lifecycle (design §12) is here too: entering a status stamps ``status_changed_at``,
and entering an active status clears a cancel request and a server-set ``error_code``
(``Plan.restarts``); what a cancel does to a run (``cancel``); which runs a heartbeat is accepted
from (``HEARTBEAT_STATUS``); which runs are stale (``stale``, a query condition: the one place
staleness is written, used by the reaper, the admin column and its filter) and how the reaper
ends one (``reap``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import DateTimeField, ExpressionWrapper, F, Q, Value
from django.db.models.functions import Coalesce, Greatest
from django.db.models.lookups import LessThan

from .conf import app_settings
from .exceptions import AlreadyActiveInCloud, InvalidTransition, OutputTooLarge, StateTooLarge
from .history import Change
from .models import TaskRun, TaskRunEnvironment, TaskRunEventKind, TaskRunStatus
from .transitions import TERMINAL_STATUSES, allowed_targets, is_allowed, transition_table

#: Entering one of these starts the run's work afresh: a cancel request and a server-set
#: ``error_code`` from before are cleared, so a resumed run is neither told to stop nor reaped
#: for its past.
RESTART_STATUSES = frozenset({TaskRunStatus.QUEUED, TaskRunStatus.IN_PROGRESS})
#: The only status an executor heartbeats in; in any other the answer tells it to stop.
HEARTBEAT_STATUS = TaskRunStatus.IN_PROGRESS
#: The status a reaped run ends in, and the error code for each status a run can go stale in.
REAPED_STATUS = TaskRunStatus.FAILED
STALE_CODES = {TaskRunStatus.IN_PROGRESS: "heartbeat_timeout", TaskRunStatus.QUEUED: "queued_timeout"}

#: The plain fields a PATCH sets as sent.
PLAIN_FIELDS = ("stage", "branch", "error_message")
#: The moves that are history events, in the order their events are written.
MOVES = (
    (TaskRunEventKind.STATUS_CHANGED, "status"),
    (TaskRunEventKind.ENVIRONMENT_CHANGED, "environment"),
)


@dataclass(frozen=True)
class OutputChange:
    """How a PATCH changes ``output``: an object is merged into a stored object (a stored
    non-object counts as {}), null clears it, any other JSON value replaces it."""

    MERGE = "merge"
    CLEAR = "clear"
    REPLACE = "replace"

    kind: str
    value: Any = None

    @classmethod
    def of(cls, sent: Any) -> OutputChange:
        if isinstance(sent, dict):
            return cls(cls.MERGE, sent)
        if sent is None:
            return cls(cls.CLEAR)
        return cls(cls.REPLACE, sent)


@dataclass(frozen=True)
class Plan:
    """What one validated PATCH does, decided before the row is seen."""

    status: str | None = None
    environment: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    output: OutputChange | None = None
    # Removed first, then merged: a key both removed and sent ends with the sent value; then
    # appended to (state_append): an item per key, not again where the key is a unique one.
    state_remove: tuple[str, ...] = ()
    state_merge: Mapping[str, Any] = field(default_factory=dict)
    state_append: Mapping[str, Any] = field(default_factory=dict)
    unique_append_keys: frozenset[str] = frozenset()
    max_state_bytes: int = 0
    max_output_bytes: int = 0
    # Derived by plan_for: whether the state changes, and the history-event moves the plan may
    # make, as (event kind, column).
    changes_state: bool = False
    moves: tuple[tuple[str, str], ...] = ()

    @property
    def status_sources(self) -> list[str]:
        """The statuses from which writing ``status`` is accepted (itself included: a no-op)."""
        assert self.status is not None
        target = self.status
        return sorted(
            source for source, targets in transition_table().items() if target in (source, *targets)
        )

    @property
    def starts(self) -> bool:
        """Entering the target status sets ``started_at`` the first time."""
        return self.status == TaskRunStatus.IN_PROGRESS

    @property
    def completes(self) -> bool:
        """Entering the target status sets ``completed_at`` once."""
        return self.status in TERMINAL_STATUSES

    @property
    def restarts(self) -> bool:
        """Entering the target status clears ``cancel_requested_at`` and ``error_code``."""
        return self.status in RESTART_STATUSES

    @property
    def keys_set(self) -> list[str]:
        """The state keys set, as a history event records them (bounded: history_key_names)."""
        return history_key_names({*self.state_merge, *self.state_append})

    @property
    def keys_removed(self) -> list[str]:
        """The state keys removed, as a history event records them (bounded)."""
        return history_key_names(self.state_remove)


#: The longest key name a history event keeps; a longer one is cut to this with "…" at its end.
HISTORY_KEY_NAME_CHARS = 200


def history_key_names(keys: Iterable[str]) -> list[str]:
    """The first ``HISTORY_MAX_KEYS`` key names in sorted order, each cut to
    ``HISTORY_KEY_NAME_CHARS``: a history row is bounded whatever one PATCH sends, so a writer
    cannot grow the history faster than the state it bounds."""
    kept = sorted(keys)[: app_settings.HISTORY_MAX_KEYS]
    most = HISTORY_KEY_NAME_CHARS
    return [key if len(key) <= most else key[: most - 1] + "…" for key in kept]


def plan_for(changes: Mapping[str, Any]) -> Plan:
    """The plan of a validated PATCH (any subset of TaskRunUpdateSerializer's fields)."""
    state_remove = tuple(changes.get("state_remove_keys") or ())
    state_merge = dict(changes.get("state") or {})
    state_append = dict(changes.get("state_append") or {})
    return Plan(
        status=changes.get("status"),
        environment=changes.get("environment"),
        fields={name: changes[name] for name in PLAIN_FIELDS if name in changes},
        output=OutputChange.of(changes["output"]) if "output" in changes else None,
        state_remove=state_remove,
        state_merge=state_merge,
        state_append=state_append,
        unique_append_keys=frozenset(app_settings.STATE_APPEND_UNIQUE_KEYS).intersection(state_append),
        max_state_bytes=app_settings.MAX_STATE_BYTES,
        max_output_bytes=app_settings.MAX_OUTPUT_BYTES,
        changes_state=bool(state_remove or state_merge or state_append),
        moves=tuple((kind, column) for kind, column in MOVES if changes.get(column) is not None),
    )


def resume_refusal(run: TaskRun) -> AlreadyActiveInCloud | None:
    """Why ``run`` may not be resumed in cloud (it is already queued or running there), or None:
    any other run may, a finished one included (design §6)."""
    if run.environment == TaskRunEnvironment.CLOUD and run.status in (
        TaskRunStatus.QUEUED,
        TaskRunStatus.IN_PROGRESS,
    ):
        return AlreadyActiveInCloud(current_status=run.status)
    return None


def refusal(plan: Plan, status: str, environment: str) -> InvalidTransition | None:
    """Why ``plan`` may not be applied to a run in ``status`` and ``environment``, or None.

    Terminal statuses are final for ``status`` and ``environment``; data fields stay writable."""
    if plan.status is not None and not is_allowed(status, plan.status):
        return InvalidTransition(status, plan.status, allowed_targets(status))
    if plan.environment is not None and plan.environment != environment and status in TERMINAL_STATUSES:
        return InvalidTransition(status, plan.environment, [], field="environment")
    return None


def apply(plan: Plan, run: TaskRun, now: datetime) -> list[Change]:
    """Apply ``plan`` to the in-memory ``run`` (the Python executor); the history it makes.

    Raises InvalidTransition or StateTooLarge before touching anything."""
    refused = refusal(plan, run.status, run.environment)
    if refused is not None:
        raise refused
    state = run.state
    if plan.changes_state:
        state = merged_state(run.state, plan.state_merge, plan.state_remove)
        for key, item in plan.state_append.items():
            state[key] = appended(state.get(key), item, unique=key in plan.unique_append_keys)
        if state_size(state) > plan.max_state_bytes:
            raise StateTooLarge(limit=plan.max_state_bytes)
    output = run.output
    if plan.output is not None:
        output = merged_output(run.output, plan.output)
        check_output_size(output, plan.max_output_bytes)
    old_status, old_environment = run.status, run.environment
    if plan.status is not None:
        move_status(run, plan.status, now)
    if plan.environment is not None:
        run.environment = plan.environment
    for name, value in plan.fields.items():
        setattr(run, name, value)
    run.output = output
    run.state = state
    return history(plan, old_status, old_environment, run)


def history(plan: Plan, old_status: str, old_environment: str, run: TaskRun) -> list[Change]:
    """The events a PATCH makes: a status and/or an environment change, each naming the state
    keys the same PATCH set and removed."""
    old = {"status": old_status, "environment": old_environment}
    return [
        Change(
            kind,
            old=old[column],
            new=getattr(run, column),
            keys_set=plan.keys_set,
            keys_removed=plan.keys_removed,
        )
        for kind, column in plan.moves
        if getattr(run, column) != old[column]
    ]


def move_status(run: TaskRun, target: str, now: datetime) -> list[Change]:
    """Set the status and its timestamps; the caller has checked the move is allowed."""
    if target == run.status:
        return []
    change = Change(TaskRunEventKind.STATUS_CHANGED, old=run.status, new=target)
    run.status = target
    run.status_changed_at = now
    if target == TaskRunStatus.IN_PROGRESS and run.started_at is None:
        run.started_at = now
    if target in TERMINAL_STATUSES and run.completed_at is None:
        run.completed_at = now
    if target in RESTART_STATUSES:
        restart(run)
    return [change]


def restart(run: TaskRun) -> None:
    """Forget what ended or was asked of the run's previous attempt (design §12)."""
    run.cancel_requested_at = None
    run.error_code = None


def cancel(run: TaskRun, reason: str, now: datetime) -> list[Change]:
    """A cooperative cancel (design §12), applied to the locked ``run``; the history it makes.

    A run no executor has picked up (not started, queued) is cancelled at once. An in-progress
    run gets ``cancel_requested_at``: its executor learns it from its heartbeat, a GET or the
    stream, stops, and writes a terminal status itself. A terminal run, or a repeated request,
    changes nothing (an empty history: nothing to write). Raises InvalidTransition when a host's
    transition table does not let a waiting run be cancelled."""
    if run.status in TERMINAL_STATUSES or run.cancel_requested_at is not None:
        return []
    requested = Change(TaskRunEventKind.CANCEL_REQUESTED, old=run.status, note=reason)
    run.cancel_requested_at = now
    if run.status == TaskRunStatus.IN_PROGRESS:
        return [requested]
    if not is_allowed(run.status, TaskRunStatus.CANCELLED):
        raise InvalidTransition(run.status, TaskRunStatus.CANCELLED, allowed_targets(run.status))
    return [requested, *move_status(run, TaskRunStatus.CANCELLED, now)]


def cancel_is_pending(run: TaskRun) -> bool:
    """Whether the run's executor has been asked to stop and has not yet ended the run."""
    return run.cancel_requested_at is not None and run.status not in TERMINAL_STATUSES


def stale(now: datetime) -> Q:
    """The runs that are stale at ``now``, as a query condition (both databases).

    In progress with a ``heartbeat_timeout``, and silent for longer than it: the later of the
    last heartbeat and the moment it entered ``in_progress`` is older than the timeout (a run
    that never heartbeated counts from its start, so it is not kept forever). Queued for longer
    than ``TASKRUNS["QUEUED_TTL"]`` seconds, when that is set."""
    last_sign_of_life = Greatest(Coalesce("last_heartbeat_at", "status_changed_at"), "status_changed_at")
    deadline = ExpressionWrapper(last_sign_of_life + F("heartbeat_timeout"), output_field=DateTimeField())
    silent = LessThan(deadline, Value(now, output_field=DateTimeField()))
    condition = Q(silent, status=TaskRunStatus.IN_PROGRESS, heartbeat_timeout__isnull=False)
    ttl = app_settings.QUEUED_TTL
    if ttl is not None:
        condition |= Q(status=TaskRunStatus.QUEUED, status_changed_at__lt=now - timedelta(seconds=ttl))
    return condition


def reap(run: TaskRun, now: datetime) -> list[Change]:
    """End the stale, locked ``run`` as the reaper does: ``failed`` with the error code of the
    status it went stale in, through the transition table like any other move."""
    code = STALE_CODES[TaskRunStatus(run.status)]
    if not is_allowed(run.status, REAPED_STATUS):
        raise InvalidTransition(run.status, REAPED_STATUS, allowed_targets(run.status))
    reason = "no heartbeat within its heartbeat timeout" if code == "heartbeat_timeout" else "queued too long"
    history = move_status(run, REAPED_STATUS, now)
    run.error_code = code
    run.error_message = f"Reaped by the server: {reason}."
    return [*history, Change(TaskRunEventKind.REAPED, new=code)]


def move_environment(run: TaskRun, target: str) -> list[Change]:
    if target == run.environment:
        return []
    change = Change(TaskRunEventKind.ENVIRONMENT_CHANGED, old=run.environment, new=target)
    run.environment = target
    return [change]


def merged_output(stored: Any, change: OutputChange) -> Any:
    if change.kind == OutputChange.MERGE:
        return {**(stored if isinstance(stored, dict) else {}), **change.value}
    return change.value  # None for CLEAR


def log_entry_size(entry: Any) -> int:
    """The bytes a log entry counts for: its compact JSON in UTF-8."""
    return len(json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode())


def check_output_size(output: Any, limit: int) -> None:
    """Raise OutputTooLarge when ``output`` measures (as the state does) more than ``limit``."""
    if output is not None and state_size(output) > limit:
        raise OutputTooLarge(limit=limit)


def merged_state(stored: Any, sent: Mapping[str, Any], remove_keys: Iterable[str]) -> dict[str, Any]:
    """Remove ``remove_keys``, then shallow-merge ``sent``."""
    state = dict(stored) if isinstance(stored, dict) else {}
    for key in remove_keys:
        state.pop(key, None)
    state.update(sent)
    return state


def appended(current: Any, item: Any, *, unique: bool) -> list[Any]:
    """A state key's value after ``state_append`` (design §4): a list gets ``item`` at its end; a
    missing or null key becomes ``[item]``; any other value becomes ``[value, item]`` (nothing is
    dropped). An item that is itself a list is one item. For a unique key (STATE_APPEND_UNIQUE_KEYS)
    an item already there, equal as JSON, is not appended again."""
    items = current if isinstance(current, list) else [] if current is None else [current]
    if unique and any(json_equal(item, existing) for existing in items):
        return list(items)
    return [*items, item]


def json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON values as PostgreSQL's ``jsonb =`` decides it, which Python's ``==``
    does not: ``true`` is not ``1``, and numbers compare as the decimal numbers their JSON text
    says (``1`` equals ``1.0``; a float equals an integer only if its shortest text does)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return _decimal(a) == _decimal(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[key], b[key]) for key in a)
    if type(a) is not type(b):
        return False
    return bool(a == b)


def _decimal(number: float) -> Decimal:
    return Decimal(repr(number)) if isinstance(number, float) else Decimal(number)


def state_size(value: Any) -> int:
    """The size MAX_STATE_BYTES limits: the UTF-8 bytes of ``value`` as PostgreSQL prints it as
    ``jsonb`` (``octet_length(state::text)``), computed here without a database.

    jsonb prints ``", "`` and ``": "`` between items, as ``json.dumps`` does by default, and
    strings with the same escapes as ``json.dumps(ensure_ascii=False)``; only numbers differ: a
    number is stored as ``numeric`` and printed without an exponent (``1e+16`` is
    ``10000000000000000``, ``1e-07`` is ``0.0000001``), and ``-0.0`` as ``0.0``. (Key order
    differs too, which does not change the length.)"""
    if isinstance(value, dict):
        items = sum(_string_size(key) + 2 + state_size(item) for key, item in value.items())
        return 2 + items + 2 * max(len(value) - 1, 0)
    if isinstance(value, list):
        return 2 + sum(state_size(item) for item in value) + 2 * max(len(value) - 1, 0)
    if isinstance(value, str):
        return _string_size(value)
    if isinstance(value, float):
        return len(_numeric_text(value))
    return len(json.dumps(value))  # true, false, null, integers


def _string_size(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode())


def _numeric_text(number: float) -> str:
    # json.dumps writes a float as repr() does; PostgreSQL reads that text as numeric.
    text = format(Decimal(repr(number)), "f")
    return text.removeprefix("-") if number == 0 else text
