"""Run history: who changed what, recorded in the same transaction as the change itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .models import ApiKey, TaskRun, TaskRunEvent


@dataclass(frozen=True)
class Actor:
    """Who made a change: a user, the API key they used (if any), and through what."""

    user: Any = None
    api_key: ApiKey | None = None
    via: str = "system"

    @classmethod
    def from_request(cls, request: Any, via: str = "api") -> Actor:
        """The request's authenticated caller (DRF has authenticated it before the view)."""
        user = request.user if getattr(request.user, "is_authenticated", False) else None
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        return cls(user=user, api_key=api_key, via=via)


SYSTEM = Actor()


@dataclass
class Change:
    """One thing that happened to a run, before it is stored as a TaskRunEvent."""

    kind: str
    old: str = ""
    new: str = ""
    keys_set: list[str] = field(default_factory=list)
    keys_removed: list[str] = field(default_factory=list)
    note: str = ""


def record(run: TaskRun, changes: Iterable[Change], actor: Actor) -> None:
    """Store the changes as events of ``run`` in one statement."""
    TaskRunEvent.objects.bulk_create(
        TaskRunEvent(
            run=run,
            kind=change.kind,
            from_value=change.old or "",
            to_value=change.new or "",
            state_keys_set=change.keys_set,
            state_keys_removed=change.keys_removed,
            actor_user=actor.user if getattr(actor.user, "pk", None) else None,
            actor_api_key=actor.api_key,
            via=actor.via,
            note=change.note,
        )
        for change in changes
    )
