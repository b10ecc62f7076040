"""The status transition table: the one place that says which status moves are allowed.

PATCH, the run actions, the admin and internal code all ask this module. A host may replace
the table with ``TASKRUNS["TRANSITIONS"]``; ``taskruns.checks`` validates it at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping

from .conf import app_settings
from .models import TaskRunStatus as S

TERMINAL_STATUSES = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})

DEFAULT_TRANSITIONS: Mapping[str, frozenset[str]] = {
    S.NOT_STARTED: frozenset({S.QUEUED, S.IN_PROGRESS, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.QUEUED: frozenset({S.IN_PROGRESS, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.IN_PROGRESS: frozenset({S.QUEUED, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}


def transition_table() -> Mapping[str, frozenset[str]]:
    """The table in force: the host's replacement if it set one, else the default."""
    custom = app_settings.TRANSITIONS
    if custom is None:
        return DEFAULT_TRANSITIONS
    return {source: frozenset(targets) for source, targets in custom.items()}


def allowed_targets(current: str) -> list[str]:
    """The statuses a run in ``current`` may move to, in the order the enum lists them."""
    targets = transition_table().get(current, frozenset())
    return [status for status in S.values if status in targets]


def is_allowed(current: str, target: str) -> bool:
    """Whether writing ``target`` to a run in ``current`` is accepted (same status is a no-op)."""
    return target == current or target in transition_table().get(current, frozenset())


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES
