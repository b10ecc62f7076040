"""System checks for ``TASKRUNS``: a bad setting stops start-up with a clear message."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings as django_settings
from django.core import checks
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils.module_loading import import_string

from . import rows
from .conf import DEFAULTS, app_settings, user_settings
from .models import TaskRun, TaskRunStatus
from .spectacular_settings import ENUM_NAME_OVERRIDES
from .transitions import TERMINAL_STATUSES


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every ``TASKRUNS`` key has a check here (CHECKED_KEYS; a test holds it to conf.DEFAULTS)."""
    config = user_settings()
    if not isinstance(config, dict):
        return [checks.Error("TASKRUNS must be a dict.", id="taskruns.E001")]
    errors: list[checks.CheckMessage] = []
    for name in sorted(set(config) - set(DEFAULTS)):
        errors.append(
            checks.Warning(
                f"TASKRUNS has an unknown key {name!r}.",
                hint=f"Known keys: {sorted(DEFAULTS)}.",
                id="taskruns.W001",
            )
        )
    errors += _check_transitions(config.get("TRANSITIONS"))
    for name in STRING_LISTS:
        value = config.get(name, [])
        if not isinstance(value, list | tuple | set | frozenset) or not all(
            isinstance(k, str) for k in value
        ):
            errors.append(checks.Error(f"TASKRUNS[{name!r}] must be a list of strings.", id="taskruns.E003"))
    errors += _check_class_lists(config)
    for name in CALLABLES:
        path = config.get(name, DEFAULTS[name])
        if path is None and name in OPTIONAL_CALLABLES:
            continue
        try:
            target = import_string(path)
        except (ImportError, TypeError, ValueError) as exc:
            errors.append(checks.Error(f"TASKRUNS[{name!r}] cannot be imported: {exc}", id="taskruns.E004"))
            continue
        if not callable(target):
            errors.append(checks.Error(f"TASKRUNS[{name!r}] must name a callable.", id="taskruns.E004"))
    for name in LIMITS:
        value = config.get(name, DEFAULTS[name])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append(
                checks.Error(
                    f"TASKRUNS[{name!r}] must be a positive whole number, got {value!r}.", id="taskruns.E006"
                )
            )
    errors += _check_throttling(config)
    if not isinstance(config.get("STREAM_SHARED_READS", True), bool):
        errors.append(
            checks.Error("TASKRUNS['STREAM_SHARED_READS'] must be True or False.", id="taskruns.E009")
        )
    dsn = config.get("STREAM_LISTEN_DSN")
    if dsn is not None and not isinstance(dsn, str):
        errors.append(
            checks.Error(
                "TASKRUNS['STREAM_LISTEN_DSN'] must be None or a connection string.", id="taskruns.E009"
            )
        )
    for name in SECONDS:
        value = config.get(name, DEFAULTS[name])
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            errors.append(
                checks.Error(
                    f"TASKRUNS[{name!r}] must be a positive number of seconds, got {value!r}.",
                    id="taskruns.E009",
                )
            )
    for name in OPTIONAL_SECONDS:
        value = config.get(name, DEFAULTS[name])
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            errors.append(
                checks.Error(
                    f"TASKRUNS[{name!r}] must be None or a positive whole number of seconds, got {value!r}.",
                    id="taskruns.E007",
                )
            )
    return errors


#: Cache backends whose counts are per process: a throttle counted there does not hold for a
#: server of several processes.
PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


def _check_throttling(config: dict[str, Any]) -> list[checks.CheckMessage]:
    from rest_framework.throttling import SimpleRateThrottle

    messages: list[checks.CheckMessage] = []
    rates = config.get("THROTTLE_RATES", DEFAULTS["THROTTLE_RATES"])
    scopes = set(DEFAULTS["THROTTLE_RATES"])
    if not isinstance(rates, dict) or not set(rates) <= scopes:
        return [
            checks.Error(
                f"TASKRUNS['THROTTLE_RATES'] must be a dict with keys among {sorted(scopes)}.",
                id="taskruns.E008",
            )
        ]
    for scope, rate in rates.items():
        try:
            if rate is not None:
                SimpleRateThrottle.parse_rate(None, rate)  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            messages.append(
                checks.Error(
                    f"TASKRUNS['THROTTLE_RATES'][{scope!r}] must be None or a rate like '1200/min', "
                    f"got {rate!r}.",
                    id="taskruns.E008",
                )
            )
    alias = config.get("THROTTLE_CACHE", DEFAULTS["THROTTLE_CACHE"])
    caches_setting = getattr(django_settings, "CACHES", {}) or {"default": {}}
    if alias not in caches_setting:
        messages.append(
            checks.Error(
                f"TASKRUNS['THROTTLE_CACHE'] names no cache in CACHES: {alias!r}.", id="taskruns.E008"
            )
        )
    elif caches_setting[alias].get("BACKEND", PER_PROCESS_CACHES[0]) in PER_PROCESS_CACHES:
        messages.append(
            checks.Warning(
                f"The app's request rates are counted in the cache {alias!r}, which each server "
                "process keeps for itself: N processes allow N times each rate.",
                hint="Point TASKRUNS['THROTTLE_CACHE'] at a shared cache (Redis, Memcached, or a "
                "file-based cache on a single machine).",
                id="taskruns.W007",
            )
        )
    return messages


STRING_LISTS = ("PROTECTED_STATE_KEYS", "RESUME_CLEAR_STATE_KEYS", "STATE_APPEND_UNIQUE_KEYS")
CALLABLES = ("CLOUD_STARTER", "ACCESS_POLICY", "EXCEPTION_HANDLER", "LIVENESS_CHECK")
OPTIONAL_CALLABLES = ("CLOUD_STARTER", "LIVENESS_CHECK")
#: Durations that may be fractions of a second (the stream's timings).
SECONDS = ("STREAM_MAX_SECONDS", "STREAM_KEEPALIVE_SECONDS", "STREAM_POLL_SECONDS", "STREAM_WSGI_MAX_SECONDS")
OPTIONAL_SECONDS = (
    "HEARTBEAT_TIMEOUT",
    "QUEUED_TTL",
    "LOCK_TIMEOUT",
    "STATEMENT_TIMEOUT",
    "DATABASE_DEADLINE",
)
CLASS_LISTS = ("AUTHENTICATION_CLASSES", "PERMISSION_CLASSES")
LIMITS = (
    "LOG_MAX_ENTRIES_PER_CALL",
    "LOG_MAX_ENTRY_BYTES",
    "LOG_MAX_ENTRIES_PER_RUN",
    "MAX_REQUEST_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_STATE_KEYS_PER_PATCH",
    "MAX_STATE_BYTES",
    "MAX_OUTPUT_BYTES",
    "LOG_MAX_BYTES_PER_RUN",
    "HISTORY_MAX_KEYS",
    "STREAM_READ_THREADS",
    "LIST_COUNT_LIMIT",
)
#: The keys check_settings looks at, each by one of the groups above (TRANSITIONS by its own).
CHECKED_KEYS = frozenset(
    {*STRING_LISTS, *CALLABLES, *CLASS_LISTS, *LIMITS, *OPTIONAL_SECONDS, *SECONDS}
    | {"TRANSITIONS", "THROTTLE_RATES", "THROTTLE_CACHE", "STREAM_LISTEN_DSN", "STREAM_SHARED_READS"}
)


@checks.register()
def check_fast_paths(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Say which of the write path's fast paths are off, and why, instead of falling back
    silently (taskruns.executors, taskruns.rows, taskruns.access)."""
    messages: list[checks.CheckMessage] = []
    alias = rows.database_of(TaskRun)
    if alias != DEFAULT_DB_ALIAS:
        messages.append(
            checks.Info(
                f"The database routers write taskruns' runs to {alias!r}: the app's statements, reads "
                "and transactions use that alias.",
                id="taskruns.I003",
            )
        )
    database = django_settings.DATABASES.get(alias, {})
    if database.get("ENGINE") != "django.db.backends.postgresql":
        return messages
    if app_settings.DATABASE_DEADLINE is not None and not database.get("OPTIONS", {}).get("connect_timeout"):
        messages.append(
            checks.Warning(
                f"Database {alias!r} has no connect_timeout: a new connection to a server that "
                "stops answering waits for ever, which the app's database deadline cannot cut short "
                "(it severs open connections only).",
                hint="Set DATABASES OPTIONS connect_timeout (seconds; a libpq parameter, which "
                "poolers accept), e.g. 3.",
                id="taskruns.W006",
            )
        )
    policy = app_settings.ACCESS_POLICY
    if policy != DEFAULTS["ACCESS_POLICY"]:
        messages.append(
            checks.Info(
                f"TASKRUNS['ACCESS_POLICY'] is {policy!r}: a run's statements check its scope with "
                "the policy's SQL, planned with each statement, instead of the reach function of "
                "migration 0005.",
                id="taskruns.I002",
            )
        )
    if not rows.psycopg3():
        messages.append(
            checks.Warning(
                "psycopg 2 is in use: the hot statements are bound on the client and never prepared.",
                hint="Install psycopg 3 (taskruns[postgres]).",
                id="taskruns.W004",
            )
        )
        return messages
    threshold = database.get("OPTIONS", {}).get("prepare_threshold")
    mode = (
        f"on: psycopg prepares a hot statement after {threshold} runs on a connection"
        if threshold is not None
        else "off (Django's default; needed behind a transaction-mode pooler older than PgBouncer 1.21)"
    )
    messages.append(checks.Info(f"Prepared statements are {mode}.", id="taskruns.I001"))
    return messages


@checks.register(checks.Tags.database)
def check_pooler(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A start-up probe (it runs with ``migrate`` and ``check --database``): is a
    transaction-mode pooler between the app and PostgreSQL, and are prepared statements off, as
    they must be behind one (unless it is PgBouncer >= 1.21 with ``max_prepared_statements``)?"""
    alias = rows.database_of(TaskRun)
    if not databases or alias not in databases:
        return []
    connection = connections[alias]
    if connection.vendor != "postgresql" or not rows.psycopg3():
        return []
    try:
        pooled = transaction_pooler_between(connection.get_connection_params())
    except Exception:  # the probe cannot tell (no database yet, no permission): say nothing
        return []
    if not pooled:
        return []
    threshold = connection.settings_dict.get("OPTIONS", {}).get("prepare_threshold")
    if threshold is None:
        return [
            checks.Info(
                f"Database {alias!r} is reached through a transaction-mode pooler (its server "
                "connections change between transactions); prepared statements are off, as they "
                "must be there.",
                id="taskruns.I004",
            )
        ]
    return [
        checks.Warning(
            f"Database {alias!r} is reached through a transaction-mode pooler, and prepared "
            f"statements are on (prepare_threshold={threshold}): a statement prepared on one server "
            "connection fails on the next ('prepared statement … does not exist').",
            hint="Set DATABASES OPTIONS prepare_threshold to None (the production profile's "
            "DJANGO_DB_PREPARE_THRESHOLD=off), unless the pooler is PgBouncer 1.21 or later with "
            "max_prepared_statements set; then silence taskruns.W005.",
            id="taskruns.W005",
        )
    ]


def transaction_pooler_between(params: dict[str, Any]) -> bool:
    """Whether the server connection behind one client connection changes between
    transactions, which happens only behind a transaction-mode pooler.

    The probe's first statement ends its transaction and gives its server connection back; a
    second client then takes one (a pooler hands out the one just freed) and keeps it in an open
    transaction; the probe's next statement must then run on another server connection. On a
    direct connection the probe's backend never changes."""
    import psycopg

    params = {key: value for key, value in params.items() if key not in ("cursor_factory", "context")}
    with psycopg.connect(**params, autocommit=True) as probe, psycopg.connect(**params) as holder:
        first = probe.execute("SELECT pg_backend_pid()").fetchone()
        holder.execute("SELECT pg_backend_pid()")  # holds its server connection: a transaction is open
        second = probe.execute("SELECT pg_backend_pid()").fetchone()
        holder.rollback()
    return first != second


def _check_class_lists(config: dict[str, Any]) -> list[checks.CheckMessage]:
    """AUTHENTICATION_CLASSES and PERMISSION_CLASSES: lists of dotted paths to classes."""
    errors: list[checks.CheckMessage] = []
    for name in CLASS_LISTS:
        paths = config.get(name, DEFAULTS[name])
        if isinstance(paths, str) or not isinstance(paths, list | tuple):
            errors.append(
                checks.Error(f"TASKRUNS[{name!r}] must be a list of dotted paths.", id="taskruns.E005")
            )
            continue
        for path in paths:
            try:
                target = import_string(path)
            except (ImportError, TypeError, ValueError) as exc:
                errors.append(
                    checks.Error(
                        f"TASKRUNS[{name!r}]: {path!r} cannot be imported: {exc}", id="taskruns.E005"
                    )
                )
                continue
            if not isinstance(target, type):
                errors.append(
                    checks.Error(f"TASKRUNS[{name!r}]: {path!r} is not a class.", id="taskruns.E005")
                )
    return errors


@checks.register()
def check_schema_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The app's enum component names need the host's SPECTACULAR_SETTINGS (drf-spectacular
    names enums once for the whole schema): say so when they are missing."""
    if not apps.is_installed("drf_spectacular"):
        return []
    overrides = getattr(django_settings, "SPECTACULAR_SETTINGS", {}).get("ENUM_NAME_OVERRIDES", {})
    if missing := sorted(set(ENUM_NAME_OVERRIDES) - set(overrides)):
        return [
            checks.Warning(
                f"SPECTACULAR_SETTINGS['ENUM_NAME_OVERRIDES'] lacks taskruns' {missing}: the schema's "
                "enums will not have PostHog's names and may collide with the host's.",
                hint="Merge taskruns.spectacular_settings.ENUM_NAME_OVERRIDES into it (README, "
                "'Adding taskruns to an existing project').",
                id="taskruns.W002",
            )
        ]
    return []


def _check_transitions(table: Any) -> list[checks.CheckMessage]:
    if table is None:
        return []
    statuses = set(TaskRunStatus.values)

    def error(message: str) -> checks.Error:
        return checks.Error(f"TASKRUNS['TRANSITIONS'] {message}", id="taskruns.E002")

    if not isinstance(table, dict):
        return [error("must be a dict of {status: [statuses]}.")]
    problems: list[checks.CheckMessage] = []
    if missing := statuses - set(table):
        problems.append(error(f"has no row for {sorted(missing)}."))
    for source, targets in table.items():
        if source not in statuses:
            problems.append(error(f"names an unknown status {source!r}."))
            continue
        if isinstance(targets, str) or not all(t in statuses for t in targets):
            problems.append(error(f"row {source!r} must be a list of known statuses, got {targets!r}."))
        elif source in TERMINAL_STATUSES and targets:
            problems.append(error(f"lets terminal status {source!r} move; only resume_in_cloud may do that."))
    return problems
