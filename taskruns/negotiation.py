"""Content negotiation of the app's views: DRF's, remembered.

Every request parses its Accept header and matches it against the renderers, and the answer
depends only on the view's renderer classes, the format asked for (suffix or ``?format=``) and
the header's text. Agents send the same header on every call, so the answer is kept, for a
bounded number of distinct headers (a client that sends many different ones just goes through
DRF's negotiation every time).
"""

from __future__ import annotations

from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation

MAX_REMEMBERED = 128

# (renderer classes, format, Accept header) -> (index of the chosen renderer, media type)
_chosen: dict[tuple[Any, ...], tuple[int, str]] = {}


class RememberedContentNegotiation(DefaultContentNegotiation):
    """DefaultContentNegotiation whose choices are kept per renderer classes, format and
    Accept header; errors (406, unknown format) are never kept."""

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        requested_format = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
        key = (
            tuple(type(renderer) for renderer in renderers),
            requested_format,
            request.headers.get("accept"),
        )
        chosen = _chosen.get(key)
        if chosen is None:
            renderer, media_type = super().select_renderer(request, renderers, format_suffix)
            chosen = (renderers.index(renderer), media_type)
            if len(_chosen) < MAX_REMEMBERED:
                _chosen[key] = chosen
        index, media_type = chosen
        return renderers[index], media_type
