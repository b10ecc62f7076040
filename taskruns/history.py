"""Run history: who changed what, recorded in the same transaction as the change itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .models import ApiKey, TaskRun, TaskRunEvent


@dataclass(frozen=True)
class Actor:
    """Who made a change: a user, the API key they used (if any), and through what."""

    user: object = None
    api_key: ApiKey | None = None
    via: str = "system"

    @classmethod
    def from_request(cls, request, via: str = "api") -> Actor:
        return RequestActor(request, via)


class RequestActor(Actor):
    """The caller of a request, found out only when a change is recorded: a PATCH that records
    nothing then never makes the request look its key up (see taskruns.statement_auth).
    Reading ``user`` or ``api_key`` authenticates the request if nothing has yet, and so may
    raise DRF's AuthenticationFailed."""

    def __init__(self, request, via: str = "api") -> None:
        object.__setattr__(self, "request", request)
        object.__setattr__(self, "via", via)

    def __repr__(self) -> str:  # the dataclass's would read (and so authenticate) the caller
        return f"RequestActor(via={self.via!r})"

    @property
    def user(self):
        user = self.request.user
        return user if getattr(user, "is_authenticated", False) else None

    @property
    def api_key(self) -> ApiKey | None:
        return self.request.auth if isinstance(self.request.auth, ApiKey) else None


SYSTEM = Actor()


@dataclass
class Change:
    """One thing that happened to a run, before it is stored as a TaskRunEvent."""

    kind: str
    old: str = ""
    new: str = ""
    keys_set: list[str] = field(default_factory=list)
    keys_removed: list[str] = field(default_factory=list)


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
        )
        for change in changes
    )
