"""Hand-written SQL on the hot paths (the key lookup, the read of a run and the one-statement
PATCH): run without compiling a queryset on every request, planned once per connection on
PostgreSQL, and read back into model instances.

Values go through the same converters the ORM applies, so a row read here equals one read
through a queryset on every backend.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections, router
from django.db.models import Model

from .storedjson import StoredJSON, StoredJSONField

ModelT = TypeVar("ModelT", bound=Model)


def database_of(model: type[Model]) -> str:
    """The database alias the app's hand-written statements and transactions use for ``model``:
    the one the host's routers write it to. Reads go there too, so that an agent always reads
    what it has just written (a read replica's lag never shows)."""
    return router.db_for_write(model) or DEFAULT_DB_ALIAS


@functools.lru_cache(maxsize=32)
def _fields_and_converters(model: type[Model], using: str) -> tuple[tuple[bool, Any, list[Any]], ...]:
    connection = connections[using]
    table = model._meta.db_table
    result: list[tuple[bool, Any, list[Any]]] = []
    for field in model._meta.concrete_fields:
        column = field.get_col(table)
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        result.append((isinstance(field, StoredJSONField), column, converters))
    return tuple(result)


@functools.lru_cache(maxsize=64)
def columns(model: type[Model], alias: str, using: str) -> str:
    """The select list of ``model``'s concrete columns, qualified by ``alias``, in field order."""
    quote = connections[using].ops.quote_name
    return ", ".join(f"{alias}.{quote(str(f.column))}" for f in model._meta.concrete_fields)


def width(model: type[Model]) -> int:
    return len(model._meta.concrete_fields)


def instance(model: type[ModelT], values: Sequence[Any], using: str) -> ModelT:
    """A ``model`` instance from ``values`` in the order of columns(model, …).

    The JSON text of a StoredJSONField is kept as it came (see taskruns.storedjson)."""
    connection = connections[using]
    converted: list[Any] = []
    fields = _fields_and_converters(model, using)
    for (stored_json, column, converters), value in zip(fields, values, strict=True):
        if stored_json and isinstance(value, str):
            value = StoredJSON(value)
        else:
            for converter in converters:
                value = converter(value, column, connection)
        converted.append(value)
    return model.from_db(using, None, converted)  # type: ignore[arg-type]


def fetch_one(sql: str, params: Sequence[Any], using: str) -> tuple[Any, ...] | None:
    """Run one of the hot paths' statements; its first row, or None.

    Django binds parameters into the SQL text on the client, so PostgreSQL parses and plans
    every statement anew. With psycopg 3 the statements here are bound on the server instead,
    which lets psycopg prepare a statement once it has run ``prepare_threshold`` times on a
    connection, if the database OPTIONS set one (Django's default is None: never, for the sake
    of connection poolers; the demo settings set 5): then PostgreSQL parses and plans it once
    per connection, which was most of its time on the key lookup and a third of it on the
    PATCH statement. Only the cursor's class changes: the cursor is still Django's, with its
    error wrapping, query logging and execute wrappers.
    """
    with _server_bound_cursor(connections[using]) as cursor:
        cursor.execute(sql, params)
        row: tuple[Any, ...] | None = cursor.fetchone()
        return row


@functools.cache
def psycopg3() -> bool:
    """Whether Django's PostgreSQL backend runs on psycopg 3."""
    from django.db.backends.postgresql import base

    return bool(getattr(base, "is_psycopg3", False))


def _server_bound_cursor(connection: Any) -> Any:
    """A cursor that sends parameters apart from the statement's text: with psycopg 3 only."""
    if connection.vendor != "postgresql" or not psycopg3():
        return connection.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    client = connection.connection
    usual = client.cursor_factory
    client.cursor_factory = ServerBindingCursor
    try:
        cursor = connection.cursor()
    finally:
        client.cursor_factory = usual
    if connection.timezone is datetime.UTC:
        # Django reads timestamps with a loader written in Python, there to give them the
        # connection's time zone; when that zone is UTC (USE_TZ, no database TIME_ZONE: the
        # session's zone is UTC too), psycopg's own loader, in C, gives the same values.
        cursor.cursor.adapters.register_loader("timestamptz", _psycopg_timestamptz_loader())
    return cursor


@functools.cache
def _psycopg_timestamptz_loader() -> Any:
    import psycopg
    from psycopg.pq import Format

    return psycopg.adapters.get_loader(psycopg.adapters.types["timestamptz"].oid, Format.TEXT)
