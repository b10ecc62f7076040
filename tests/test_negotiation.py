"""The app's remembered content negotiation chooses exactly as DRF's own."""

from __future__ import annotations

import pytest
from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from taskruns import negotiation
from taskruns.negotiation import RememberedContentNegotiation
from taskruns.renderers import TaskRunsJSONRenderer

from .conftest import run_url

ACCEPTS = [
    None,
    "*/*",
    "application/json",
    "application/json; indent=4",
    "text/html",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "application/*",
    "text/*;q=0.5, application/json;q=0.9",
]


def choose(negotiator, accept, query="", format_suffix=None):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get(f"/x/{query}", **headers))
    renderers = [TaskRunsJSONRenderer(), BrowsableAPIRenderer()]
    try:
        renderer, media_type = negotiator.select_renderer(request, renderers, format_suffix)
    except (NotAcceptable, Http404) as exc:
        return type(exc)
    return renderers.index(renderer), media_type


@pytest.fixture(autouse=True)
def forget():
    negotiation._chosen.clear()
    yield
    negotiation._chosen.clear()


@pytest.mark.parametrize("query", ["", "?format=json", "?format=api", "?format=xml"])
@pytest.mark.parametrize("accept", [*ACCEPTS, "image/png", "application/xml"])
def test_chooses_as_drf_does_the_first_time_and_after(accept, query):
    expected = choose(DefaultContentNegotiation(), accept, query)
    assert choose(RememberedContentNegotiation(), accept, query) == expected
    assert choose(RememberedContentNegotiation(), accept, query) == expected
    remembered = not isinstance(expected, type)
    assert len(negotiation._chosen) == (1 if remembered else 0)


def test_a_format_suffix_is_part_of_the_choice():
    assert choose(RememberedContentNegotiation(), None, format_suffix="api")[0] == 1
    assert choose(RememberedContentNegotiation(), None, format_suffix="json")[0] == 0
    assert choose(RememberedContentNegotiation(), None)[0] == 0


def test_many_distinct_headers_are_answered_but_not_all_kept():
    for i in range(negotiation.MAX_REMEMBERED + 50):
        assert choose(RememberedContentNegotiation(), f"application/json; v={i}")[0] == 0
    assert len(negotiation._chosen) == negotiation.MAX_REMEMBERED


def test_through_the_api_the_accept_header_still_decides(api, run):
    for _ in range(2):
        assert api.get(run_url(run), HTTP_ACCEPT="text/html")["Content-Type"].startswith("text/html")
        pretty = api.get(run_url(run), HTTP_ACCEPT="application/json; indent=2")
        assert pretty.content.startswith(b'{\n  "id"')
        assert api.get(run_url(run), HTTP_ACCEPT="image/png").status_code == 406
