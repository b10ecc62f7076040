"""A run's JSON passed from the database to the response as the database sent it.

A busy run's state holds thousands of keys, and every PATCH and GET returns it. Decoding it
into Python and encoding it again for the response was the largest part of such a request's
CPU time, so the hot reads (the rows of the hand-written statements, taskruns.rows, and list
pages, select_as_stored below) keep the column's JSON text as a StoredJSON,
taskruns.renderers writes that text into the response unchanged, and Python code that reads
the attribute still gets the decoded value: the field decodes it on first read.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from django.db import models
from django.db.models.functions import Cast
from django.db.models.query_utils import DeferredAttribute


class StoredJSON:
    """JSON text exactly as the database returned it for a column: valid JSON, not decoded.

    Not a str, so that nothing can mistake it for a string value: a renderer that does not
    know it fails loudly instead of answering with the JSON quoted as a string."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def decoded(self, decoder: type[json.JSONDecoder] | None = None) -> Any:
        return json.loads(self.text, cls=decoder)

    def __repr__(self) -> str:
        return f"StoredJSON({self.text[:40]!r}…)"


class DecodedOnRead(DeferredAttribute):
    """The attribute of a StoredJSONField: a StoredJSON left there by a hot read is decoded
    (with the field's decoder), and kept decoded, the first time Python code reads it.

    A data descriptor (it has ``__set__``), so that reads come here even though the value
    lives in the instance's ``__dict__``, as for any other field."""

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        value = super().__get__(instance, cls)
        if isinstance(value, StoredJSON):
            decoder = self.field.decoder  # type: ignore[attr-defined]  # a JSONField's
            value = instance.__dict__[self.field.attname] = value.decoded(decoder)
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value


class StoredJSONField(models.JSONField):
    """A JSONField whose value may arrive as JSON text and be decoded only when read."""

    descriptor_class = DecodedOnRead


def as_stored(instance: models.Model, name: str) -> Any:
    """The value of ``instance``'s field ``name`` without decoding it: a StoredJSON if it
    still holds the database's text, else the value itself."""
    value = instance.__dict__.get(name)
    return value if isinstance(value, StoredJSON) else getattr(instance, name)


QuerySetT = TypeVar("QuerySetT", bound=models.QuerySet[Any])

# The annotation under which select_as_stored reads a field's text, for adopt_stored.
_TEXT_SUFFIX = "__stored_text"


def select_as_stored(queryset: QuerySetT, *names: str) -> QuerySetT:
    """``queryset`` reading the JSON fields ``names`` as their text, for ``adopt_stored``: a
    page of runs can then be answered without decoding and re-encoding each state."""
    texts = {f"{name}{_TEXT_SUFFIX}": Cast(name, models.TextField()) for name in names}
    return queryset.defer(*names).annotate(**texts)


def adopt_stored(instance: models.Model, *names: str) -> models.Model:
    """Give an instance read by ``select_as_stored`` its JSON fields, as StoredJSON."""
    for name in names:
        text = instance.__dict__.pop(f"{name}{_TEXT_SUFFIX}")
        instance.__dict__[name] = None if text is None else StoredJSON(text)
    return instance
