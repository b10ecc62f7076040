"""The JSON renderer of the app's views: DRF's, plus StoredJSON values written as stored.

The data is encoded by DRF as usual, with a placeholder string in place of each StoredJSON;
the placeholders are then replaced by the stored texts, escaped as DRF escapes its output.
(orjson.Fragment would do the same job, but orjson would also change how every other value is
written, and it refuses integers beyond 64 bits, which JSON and jsonb both allow.)

Pretty-printed output (``; indent=N``, the browsable API) decodes the values instead, so that
they are indented like the rest.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar
from typing import Any

from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

from .storedjson import StoredJSON

# Per process and unguessable, so that no string a client stored can pose as a placeholder.
_MARK = f"stored-json-{secrets.token_hex(16)}-"
_PLACEHOLDER = re.compile(rb'"' + _MARK.encode() + rb'(\d+)"')

# The texts of the render in progress, in placeholder order; None: decode instead.
_texts: ContextVar[list[bytes] | None] = ContextVar("taskruns_stored_json_texts", default=None)


class StoredJSONEncoder(JSONEncoder):
    def default(self, obj: Any) -> Any:
        if isinstance(obj, StoredJSON):
            texts = _texts.get()
            if texts is None:
                return obj.decoded()
            texts.append(obj.text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode())
            return f"{_MARK}{len(texts) - 1}"
        return super().default(obj)


class TaskRunsJSONRenderer(JSONRenderer):
    """JSON, with StoredJSON values passed through (see taskruns.storedjson)."""

    encoder_class = StoredJSONEncoder

    def render(self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None) -> Any:
        pretty = self.get_indent(accepted_media_type, renderer_context or {}) is not None
        texts: list[bytes] | None = None if pretty else []
        token = _texts.set(texts)
        try:
            rendered = super().render(data, accepted_media_type, renderer_context)
        finally:
            _texts.reset(token)
        if texts:
            rendered = _PLACEHOLDER.sub(lambda match: texts[int(match[1])], rendered)
        return rendered


class StreamRenderer(JSONRenderer):
    """A media type a view streams itself (its log, its events): negotiating it lets a client
    ask for it; anything else the view answers (an error) is still rendered as JSON
    (TaskRunViewSet.finalize_response)."""


class NDJSONRenderer(StreamRenderer):
    media_type = "application/x-ndjson"
    format = "ndjson"


class EventStreamRenderer(StreamRenderer):
    media_type = "text/event-stream"
    format = "event-stream"
