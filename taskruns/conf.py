"""The app's settings: one dict, ``TASKRUNS``, read on every access.

Reading ``django.conf.settings`` each time (never caching at import) keeps
``override_settings`` working in tests and lets hosts change values per environment.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings as django_settings
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {
    # State keys that only server code may set or remove. A PATCH naming one, in `state`
    # or `state_remove_keys`, is rejected with 400 `protected_key`.
    "PROTECTED_STATE_KEYS": [],
    # State keys whose state_append items are not appended again when an equal item (as JSON) is
    # already in the list, e.g. PostHog's "gateway_request_ids".
    "STATE_APPEND_UNIQUE_KEYS": [],
    # State keys removed when a run is resumed in cloud (e.g. a local sandbox's address).
    "RESUME_CLEAR_STATE_KEYS": [],
    # Dotted path to a callable `starter(run)` that launches the cloud worker for a run being
    # resumed in cloud. It runs inside the resume transaction; if it raises, the resume is
    # rolled back and the client gets 502. `None` does nothing.
    "CLOUD_STARTER": None,
    # Dotted path to the class deciding which projects a user may see (see taskruns.access).
    "ACCESS_POLICY": "taskruns.access.ProjectMembershipPolicy",
    # A replacement status transition table: {from_status: [allowed targets]}. `None` uses
    # the built-in table of taskruns.transitions. A bad table is a system-check error.
    "TRANSITIONS": None,
    # append_log limits: entries per call and bytes per entry (as compact JSON) are a 400;
    # entries per run beyond the limit are a 413 `log_full`.
    "LOG_MAX_ENTRIES_PER_CALL": 1000,
    "LOG_MAX_ENTRY_BYTES": 64 * 1024,
    "LOG_MAX_ENTRIES_PER_RUN": 100_000,
    # Bytes of log entries (as compact JSON) a run may hold; past it is a 413 `log_full`.
    "LOG_MAX_BYTES_PER_RUN": 64 * 1024 * 1024,
    # Most state key names one history event keeps (of those a PATCH set, and of those it
    # removed), in sorted order; each name is cut to 200 characters.
    "HISTORY_MAX_KEYS": 100,
    # Largest request body the app's endpoints read, in bytes; larger is a 413 `request_too_large`.
    "MAX_REQUEST_BYTES": 1024 * 1024,
    # Deepest nesting of JSON arrays/objects accepted in a body; deeper is a 400 `too_deep`.
    "MAX_JSON_DEPTH": 64,
    # Most state keys one PATCH may set plus remove; more is a 400 `too_many_keys`.
    "MAX_STATE_KEYS_PER_PATCH": 1000,
    # Largest a run's state may grow, as JSON text in bytes, after a merge; larger is a 413
    # `state_too_large` and nothing is written.
    "MAX_STATE_BYTES": 1024 * 1024,
    # Largest a run's output may be, measured like the state (after a merge, as JSON text in
    # bytes); larger is a 413 `output_too_large` and nothing is written.
    "MAX_OUTPUT_BYTES": 1024 * 1024,
    # Authentication of the app's own routes, in order (DRF classes, as dotted paths). The
    # host's REST_FRAMEWORK never applies to them, and the app's key never authenticates a host
    # route. The first class gives the 401's WWW-Authenticate header. ApiKeyAuthentication
    # steps aside for a Bearer value without the app's key prefix, so a host's own Bearer
    # scheme (JWT, OAuth…) can follow it in this list.
    "AUTHENTICATION_CLASSES": [
        "taskruns.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Permission classes of the app's routes (on top of the access policy, which scopes rows).
    "PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Paginated lists count and skip rows up to this many: `count` is exact up to it (and this
    # number past it), and an `offset` at or past it is a 400 `offset_too_large` (use `?cursor=`).
    "LIST_COUNT_LIMIT": 10_000,
    # Seconds an in-progress run may stay silent (no heartbeat, no status change) before the
    # reaper fails it with error code `heartbeat_timeout`: the default of a new run's
    # `heartbeat_timeout`, which a client may set when it creates the run. `None`: never reaped,
    # because PostHog's agents do not send heartbeats.
    "HEARTBEAT_TIMEOUT": None,
    # Seconds a run may stay `queued` before the reaper fails it with error code
    # `queued_timeout` (a start that never happened). `None`: never.
    "QUEUED_TTL": None,
    # Dotted path to a callable `check(run) -> bool` the reaper asks before ending a stale run;
    # True means the run's executor is known to be alive, and the run is kept. `None`: no check.
    "LIVENESS_CHECK": None,
    # PostgreSQL: seconds a write waits for a run's row lock held by another session before it
    # is refused with 503 `run_busy` (and Retry-After); set inside the write's own transaction
    # or statement, never as a connection option (taskruns.waits). `None`: wait for ever.
    "LOCK_TIMEOUT": 2,
    # PostgreSQL: seconds one statement of a write transaction may run before it is cancelled
    # with 503 `database_timeout`. `None`: no limit.
    "STATEMENT_TIMEOUT": 5,
    # PostgreSQL: seconds a request of the app's routes may spend waiting on the database before
    # its connections are severed and it answers 503 `database_unavailable`: the bound when the
    # server stops answering altogether (taskruns.deadline). `None`: no deadline.
    "DATABASE_DEADLINE": 10,
    # Request rates of the app's routes, as DRF writes them ("1200/min"; None: not limited):
    # per API key, per user (all their keys and sessions), and failed authentications per
    # client address (REMOTE_ADDR). Past a rate: 429 `throttled` with Retry-After.
    "THROTTLE_RATES": {"api_key": "1200/min", "user": "3600/min", "failed_authentication": "60/min"},
    # The cache alias the rates are counted in. It must be shared by every server process
    # (Redis, Memcached, a file cache on one machine); a per-process memory cache lets each
    # process allow the whole rate (system check taskruns.W007).
    "THROTTLE_CACHE": "default",
    # The live stream (design §13): a connection is rotated (`end` frame, reconnect) after this
    # many seconds, and a silent one gets a `keepalive` frame this often.
    "STREAM_MAX_SECONDS": 900,
    "STREAM_KEEPALIVE_SECONDS": 20,
    # Seconds between reads of a stream that cannot be woken by PostgreSQL's notifications
    # (SQLite; PostgreSQL while the listener reconnects; every stream under WSGI).
    "STREAM_POLL_SECONDS": 1,
    # Under a WSGI server a stream holds a sync worker: it is rotated after this many seconds.
    "STREAM_WSGI_MAX_SECONDS": 25,
    # Threads (each with its own connection) that read for all the streams of one ASGI process.
    "STREAM_READ_THREADS": 4,
    # Streams of one run woken by the same notification share one read (taskruns.listen). Only
    # bench/stream.py turns it off, to measure what it buys.
    "STREAM_SHARED_READS": True,
    # The PostgreSQL connection string the stream listener LISTENs on; None: the runs database's
    # own settings. Point it at PostgreSQL itself when the app goes through a transaction-mode
    # pooler, which cannot hold a LISTEN.
    "STREAM_LISTEN_DSN": None,
    # Dotted path to the DRF exception handler of the app's routes. The default renders every
    # error as {"type", "errors": [{"code", "detail", "attr"}]} whatever the host's own
    # REST_FRAMEWORK["EXCEPTION_HANDLER"] is (taskruns.exceptions.exception_handler).
    "EXCEPTION_HANDLER": "taskruns.exceptions.exception_handler",
}


class TaskRunsSettings:
    """Attribute access to ``settings.TASKRUNS`` with the defaults above filled in."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"TASKRUNS has no setting {name!r}")
        return user_settings().get(name, DEFAULTS[name])

    def import_from(self, name: str) -> Any:
        """Import the object named by a dotted-path setting, or None when it is unset."""
        path = getattr(self, name)
        return _import(path) if path else None

    def import_each(self, name: str) -> list[Any]:
        """Import every object named by a setting that is a list of dotted paths."""
        return [_import(path) for path in getattr(self, name)]


def user_settings() -> dict[str, Any]:
    """The host's ``TASKRUNS`` dict, or an empty one."""
    return getattr(django_settings, "TASKRUNS", None) or {}


@functools.lru_cache(maxsize=64)
def _import(path: str) -> Any:
    # Keyed by the path, so a changed setting is honoured; only the import itself is cached.
    return import_string(path)


app_settings = TaskRunsSettings()
