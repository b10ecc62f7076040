"""The request parser of the app's endpoints: JSON that PostgreSQL can store, or a clear 4xx.

DRF's own JSONParser reads the whole body whatever its size, lets Python's decoder pick the last
of duplicate keys, overflows `1e999` to infinity and lets text through that PostgreSQL's `text`
and `jsonb` types refuse (NUL, lone surrogates) — each of which would end as a silent change or a
500. Everything is checked here, once, before any serializer or query sees the data.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BrowsableAPIRenderer

from .browsable import SUBMITTED_TEXT
from .conf import app_settings
from .exceptions import LengthRequired, RequestTooLarge


def check_body_length(request: Any) -> None:
    """Refuse a body too large to read, or of unknown length, before anything reads it.

    Called when a request reaches a view, ahead of authentication and of DRF, which reads the
    whole body (up to Django's own upload limit, a 500 past it) before any parser runs. A chunked
    body reaches a WSGI application with no length, which Django reads as empty: it is refused
    with 411 instead of being taken as ``{}``."""
    meta = request.META
    declared = meta.get("CONTENT_LENGTH")
    if not declared and "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
        raise LengthRequired()
    limit = app_settings.MAX_REQUEST_BYTES
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(limit=limit)


class TaskRunsJSONParser(JSONParser):
    """Strict, bounded JSON: size, depth, duplicate keys, finite numbers, storable text."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        parser_context = parser_context or {}
        limit = app_settings.MAX_REQUEST_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(limit=limit)
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise ParseError(
                _("The body is not valid {encoding}.").format(encoding=encoding), code="not_utf8"
            ) from None
        request = parser_context.get("request")
        if isinstance(getattr(request, "accepted_renderer", None), BrowsableAPIRenderer):
            # Shown again in the browsable API's form if the request is refused
            # (taskruns.browsable); an API client's body is not kept past its parsing.
            setattr(request, SUBMITTED_TEXT, text)
        try:
            data = json.loads(
                text, object_pairs_hook=_object_without_duplicates, parse_constant=_no_constants
            )
        except RecursionError:
            raise ParseError(_("The JSON is nested too deeply."), code="too_deep") from None
        except _Refused as refused:
            raise ParseError(refused.message, code=refused.code) from None
        except ValueError as exc:
            raise ParseError(_("Malformed JSON: {error}").format(error=exc), code="malformed_json") from None
        check_storable(data, app_settings.MAX_JSON_DEPTH)
        return data


class _Refused(ValueError):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _value in pairs if key in seen or _remember(seen, key))
        raise _Refused(_("Duplicate key in a JSON object: {key!r}.").format(key=duplicate), "duplicate_key")
    return result


def _remember(seen: set[str], key: str) -> bool:
    seen.add(key)
    return False


def _no_constants(name: str) -> Any:
    raise _Refused(_("{name} is not valid JSON.").format(name=name), "malformed_json")


def check_storable(value: Any, max_depth: int) -> None:
    """Raise ParseError unless ``value`` is JSON that PostgreSQL's jsonb stores unchanged:
    no deeper than ``max_depth``, finite numbers, text without NUL or lone surrogates."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise ParseError(
                    _("The JSON is nested deeper than {depth} levels.").format(depth=max_depth),
                    code="too_deep",
                )
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ParseError(_("A number is too large to store."), code="number_out_of_range")


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise ParseError(_("Text may not contain the NUL character (\\u0000)."), code="unstorable_text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError(_("Text may not contain unpaired surrogates."), code="unstorable_text") from None
