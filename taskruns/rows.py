"""Model instances from rows of hand-written SQL, on the two hot paths that use it (the key
lookup and the one-statement PATCH), without compiling a queryset on every request.

Values go through the same converters the ORM applies, so a row read here equals one read
through a queryset on every backend.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from django.db import connection
from django.db.models import Model

from .storedjson import StoredJSON, StoredJSONField


@functools.lru_cache(maxsize=32)
def _fields_and_converters(model: type[Model]):
    table = model._meta.db_table
    result = []
    for field in model._meta.concrete_fields:
        column = field.get_col(table)
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        result.append((isinstance(field, StoredJSONField), column, converters))
    return tuple(result)


@functools.lru_cache(maxsize=64)
def columns(model: type[Model], alias: str) -> str:
    """The select list of ``model``'s concrete columns, qualified by ``alias``, in field order."""
    return ", ".join(f"{alias}.{connection.ops.quote_name(f.column)}" for f in model._meta.concrete_fields)


def width(model: type[Model]) -> int:
    return len(model._meta.concrete_fields)


def instance(model: type[Model], values: Sequence):
    """A ``model`` instance from ``values`` in the order of columns(model, …).

    The JSON text of a StoredJSONField is kept as it came (see taskruns.storedjson)."""
    converted = []
    for (stored_json, column, converters), value in zip(_fields_and_converters(model), values, strict=True):
        if stored_json and isinstance(value, str):
            value = StoredJSON(value)
        else:
            for converter in converters:
                value = converter(value, column, connection)
        converted.append(value)
    return model.from_db(connection.alias, None, converted)
