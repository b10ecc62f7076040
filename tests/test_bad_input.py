"""The bad-input catalogue: what agents, scripts and attackers send, route by route.

Every case either round-trips faithfully or gets a 4xx with a machine-readable code, and after a
rejection the stored run (every column) is exactly as it was. The input classes:

1. malformed JSON and JSON extensions (NaN, Infinity, trailing garbage, empty documents)
2. bodies that are not UTF-8
3. wrong content types (form, multipart, text, XML)
4. extreme nesting (past MAX_JSON_DEPTH, and past Python's own recursion limit)
5. huge bodies (past MAX_REQUEST_BYTES, declared and undeclared)
6. huge key counts (past MAX_STATE_KEYS_PER_PATCH) and states past MAX_STATE_BYTES
7. numeric extremes (1e999, 5000-digit integers, 64-bit edges, subnormals)
8. duplicate keys, at the top level and nested
9. text PostgreSQL cannot store: NUL (\\u0000) and unpaired surrogates, in values and in keys
10. keys full of JSON-path and SQL metacharacters, which must round-trip exactly when merged
    and removed
11. very long strings, at and past each column's limit
12. bodies of the wrong JSON type (arrays, strings, numbers, null) and hostile query strings
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.test import override_settings

from taskruns import rules
from taskruns.models import Task, TaskRun, TaskRunLogEntry

from .conftest import error_codes, run_url, runs_url, stored, tasks_url

# Every route that takes a body: (name, method, url builder).
WRITE_ROUTES = [
    ("run PATCH", "patch", lambda run: run_url(run)),
    ("set_output", "patch", lambda run: run_url(run, "set_output")),
    ("append_log", "post", lambda run: run_url(run, "append_log")),
    ("run create", "post", lambda run: runs_url(run.task)),
    ("task create", "post", lambda run: tasks_url(run.project_id)),
    ("task PATCH", "patch", lambda run: f"{tasks_url(run.project_id)}{run.task_id}/"),
]
ROUTE_IDS = [name for name, _method, _url in WRITE_ROUTES]


def snapshot(run) -> tuple:
    """Everything a rejected request must leave alone."""
    return (
        stored(run),
        Task.objects.filter(pk=run.task_id).values().get(),
        TaskRun.objects.count(),
        Task.objects.count(),
        TaskRunLogEntry.objects.count(),
    )


def send(api, method, url, body: bytes, content_type="application/json", **extra):
    return api.generic(method.upper(), url, body, content_type=content_type, **extra)


def assert_rejected(response, before, run, status=400, code=None):
    assert response.status_code == status, response.content[:500]
    body = response.json()
    codes = [error["code"] for error in body["errors"]]
    if code is not None:
        assert code in codes, codes
    assert snapshot(run) == before


# --- 1-2. malformed JSON, not UTF-8 --------------------------------------------------------

MALFORMED = [
    (b"{", "malformed_json"),
    (b'{"state": }', "malformed_json"),
    (b'{"state": {"a": 1}} trailing', "malformed_json"),
    (b'{"state": {"a": NaN}}', "malformed_json"),
    (b'{"output": Infinity}', "malformed_json"),
    (b'{"output": -Infinity}', "malformed_json"),
    (b"{'single': 'quotes'}", "malformed_json"),
    (b'{"state": {"a": 1,}}', "malformed_json"),
    (b"\xef\xbb\xbf{}", "malformed_json"),  # a BOM is not JSON
    (b'{"state": {"a": "\xff"}}', "not_utf8"),
    ('{"stage": "é"}'.encode("latin-1"), "not_utf8"),
    (b'{"stage": "\xed\xa0\x80"}', "not_utf8"),  # a surrogate encoded as UTF-8 bytes
]


@pytest.mark.parametrize(("body", "code"), MALFORMED)
@pytest.mark.parametrize(("name", "method", "url"), WRITE_ROUTES, ids=ROUTE_IDS)
def test_malformed_bodies_are_400(api, run, name, method, url, body, code):
    before = snapshot(run)
    assert_rejected(send(api, method, url(run), body), before, run, code=code)


# --- 3. content types ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
@pytest.mark.parametrize(("name", "method", "url"), WRITE_ROUTES, ids=ROUTE_IDS)
def test_other_content_types_are_415(api, run, name, method, url, content_type):
    before = snapshot(run)
    response = send(api, method, url(run), b'{"stage": "x"}', content_type=content_type)
    assert_rejected(response, before, run, status=415, code="unsupported_media_type")


# --- 4. nesting ----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 100_000])
@pytest.mark.parametrize(("name", "method", "url"), WRITE_ROUTES, ids=ROUTE_IDS)
def test_deep_nesting_is_400(api, run, name, method, url, depth):
    before = snapshot(run)
    body = b'{"state": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
    assert_rejected(send(api, method, url(run), body), before, run, code="too_deep")


def test_nesting_up_to_the_limit_round_trips(api, run):
    value: list = []
    for _ in range(60):
        value = [value]
    assert api.patch(run_url(run), {"state": {"deep": value}}, format="json").status_code == 200
    assert TaskRun.objects.get(pk=run.pk).state == {"deep": value}


# --- 5. size -------------------------------------------------------------------------------


@override_settings(TASKRUNS={"MAX_REQUEST_BYTES": 2000})
@pytest.mark.parametrize(("name", "method", "url"), WRITE_ROUTES, ids=ROUTE_IDS)
def test_bodies_over_the_limit_are_413(api, run, name, method, url):
    before = snapshot(run)
    body = json.dumps({"state": {"big": "x" * 3000}}).encode()
    assert_rejected(send(api, method, url(run), body), before, run, status=413, code="request_too_large")


def test_a_body_without_content_length_is_not_read(api, run):
    # WSGI gives a request without Content-Length no body: the PATCH is empty, nothing is read.
    body = json.dumps({"state": {"big": "x" * (2 * 1024 * 1024)}}).encode()
    response = send(api, "patch", run_url(run), body, CONTENT_LENGTH="")
    assert response.status_code == 200
    assert TaskRun.objects.get(pk=run.pk).state == {}


def test_a_default_sized_large_body_round_trips(api, run):
    value = "y" * 500_000
    assert api.patch(run_url(run), {"state": {"big": value}}, format="json").status_code == 200
    assert TaskRun.objects.get(pk=run.pk).state["big"] == value


# --- 6. key counts and state size ----------------------------------------------------------


def test_too_many_keys_in_one_patch_is_400(api, run):
    before = snapshot(run)
    response = api.patch(run_url(run), {"state": {f"k{i}": i for i in range(1001)}}, format="json")
    assert_rejected(response, before, run, code="too_many_keys")
    response = api.patch(
        run_url(run),
        {"state": {f"k{i}": i for i in range(500)}, "state_remove_keys": [f"r{i}" for i in range(501)]},
        format="json",
    )
    assert_rejected(response, before, run, code="too_many_keys")


def test_a_thousand_keys_round_trip(api, run):
    state = {f"k{i}": i for i in range(1000)}
    assert api.patch(run_url(run), {"state": state}, format="json").status_code == 200
    assert TaskRun.objects.get(pk=run.pk).state == state


@override_settings(TASKRUNS={"MAX_STATE_BYTES": 5000})
def test_a_state_growing_past_the_limit_is_413_and_unchanged(api, run):
    assert api.patch(run_url(run), {"state": {"a": "x" * 3000}}, format="json").status_code == 200
    before = snapshot(run)
    response = api.patch(run_url(run), {"state": {"b": "y" * 3000}}, format="json")
    assert_rejected(response, before, run, status=413, code="state_too_large")
    # Removing in the same PATCH makes room: the limit applies to the merged result.
    response = api.patch(
        run_url(run), {"state_remove_keys": ["a"], "state": {"b": "y" * 3000}}, format="json"
    )
    assert response.status_code == 200
    assert set(TaskRun.objects.get(pk=run.pk).state) == {"b"}


# --- 7. numbers ----------------------------------------------------------------------------

ROUND_TRIP_NUMBERS = [
    0,
    -0.0,
    1,
    -1,
    2**31,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    2**64,
    10**40,
    1e308,
    -1e308,
    5e-324,
    0.1,
    1.5,
]


@pytest.mark.parametrize("number", ROUND_TRIP_NUMBERS, ids=repr)
def test_numbers_round_trip(api, run, number):
    response = api.patch(run_url(run), {"state": {"n": number}, "output": {"n": number}}, format="json")
    assert response.status_code == 200
    row = TaskRun.objects.get(pk=run.pk)
    # Same number as the JSON text sent. (jsonb keeps numbers as exact decimals, so 1e308 comes
    # back as the integer 10**308: the same JSON number, a different Python type.)
    sent = Decimal(repr(number))
    assert Decimal(str(row.state["n"])) == sent and Decimal(str(row.output["n"])) == sent
    assert Decimal(str(response.json()["state"]["n"])) == sent


@pytest.mark.parametrize(
    ("literal", "code"),
    [(b"1e999", "number_out_of_range"), (b"-1e999", "number_out_of_range"), (b"9" * 5000, "malformed_json")],
)
@pytest.mark.parametrize(("name", "method", "url"), WRITE_ROUTES, ids=ROUTE_IDS)
def test_numbers_that_cannot_be_stored_are_400(api, run, name, method, url, literal, code):
    before = snapshot(run)
    body = (
        b'{"state": {"n": '
        + literal
        + b'}, "output": {"n": '
        + literal
        + b'}, "entries": [{"n": '
        + literal
        + b"}]}"
    )
    assert_rejected(send(api, method, url(run), body), before, run, code=code)


# --- 8. duplicate keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b'{"stage": "a", "stage": "b"}', b'{"state": {"k": 1, "k": 2}}', b'{"output": {"x": {"y": 1, "y": 1}}}'],
)
@pytest.mark.parametrize(("name", "method", "url"), WRITE_ROUTES, ids=ROUTE_IDS)
def test_duplicate_keys_are_400(api, run, name, method, url, body):
    before = snapshot(run)
    assert_rejected(send(api, method, url(run), body), before, run, code="duplicate_key")


# --- 9. text PostgreSQL cannot store -------------------------------------------------------

UNSTORABLE = ["a\\u0000b", "\\u0000", "\\ud800", "x\\udfffy", "\\ud83d"]


@pytest.mark.parametrize("text", UNSTORABLE)
@pytest.mark.parametrize(
    "template",
    [
        '{"state": {"k": "%s"}}',
        '{"state": {"%s": 1}}',
        '{"state_remove_keys": ["%s"]}',
        '{"output": {"k": ["%s"]}}',
        '{"branch": "%s"}',
        '{"stage": "%s"}',
        '{"error_message": "%s"}',
        '{"entries": [{"%s": "%s"}]}',
        '{"title": "%s", "description": "%s"}',
    ],
)
@pytest.mark.parametrize(("name", "method", "url"), WRITE_ROUTES, ids=ROUTE_IDS)
def test_unstorable_text_is_400(api, run, name, method, url, template, text):
    before = snapshot(run)
    body = (template.replace("%s", text)).encode()
    assert_rejected(send(api, method, url(run), body), before, run, code="unstorable_text")


def test_storable_unicode_round_trips(api, run):
    text = 'ünïcödé — 日本語 🔑 \u2028 \t\n\r \\ / "quoted" \U0001f600'
    body = {
        "state": {text: text},
        "output": {"t": text},
        "branch": text,
        "stage": text[:50],
        "error_message": text,
    }
    assert api.patch(run_url(run), body, format="json").status_code == 200
    row = TaskRun.objects.get(pk=run.pk)
    assert (row.state, row.output, row.branch, row.error_message) == ({text: text}, {"t": text}, text, text)


# --- 10. metacharacter keys ----------------------------------------------------------------

META_KEYS = [
    "a.b",
    "$.a",
    "$[0]",
    "a[0]",
    "a->b",
    "a->>b",
    "#>",
    "@>",
    "?",
    "?|",
    "a,b",
    "{a,b}",
    "{}",
    "[]",
    "a'b",
    'a"b',
    "a\\b",
    "a;DROP TABLE taskruns_taskrun;--",
    "' OR '1'='1",
    "%s",
    "%(x)s",
    "%%",
    "$1",
    "",
    " ",
    "  padded  ",
    "a\nb",
    "\t",
    "NULL",
    "null",
    "true",
    "0",
    "-",
    "ключ",
    "🔑",
    "a\u200bb",
]


def test_metacharacter_keys_round_trip_through_merge_and_remove(api, run):
    state = {key: i for i, key in enumerate(META_KEYS)}
    assert api.patch(run_url(run), {"state": state}, format="json").status_code == 200
    assert TaskRun.objects.get(pk=run.pk).state == state
    gone, kept = META_KEYS[::2], META_KEYS[1::2]
    response = api.patch(run_url(run), {"state_remove_keys": gone}, format="json")
    assert response.status_code == 200
    assert TaskRun.objects.get(pk=run.pk).state == {key: state[key] for key in kept}
    assert response.json()["state"] == {key: state[key] for key in kept}


@pytest.mark.parametrize("key", META_KEYS)
def test_each_metacharacter_key_is_removed_alone(api, run, key):
    TaskRun.objects.filter(pk=run.pk).update(state={key: 1, "other": 2, key + "x": 3})
    assert api.patch(run_url(run), {"state_remove_keys": [key]}, format="json").status_code == 200
    assert TaskRun.objects.get(pk=run.pk).state == {"other": 2, key + "x": 3}


# --- 11. long strings ----------------------------------------------------------------------


def test_long_error_message_and_output_round_trip(api, run):
    text = "e" * 200_000
    assert (
        api.patch(run_url(run), {"error_message": text, "output": {"log": text}}, format="json").status_code
        == 200
    )
    row = TaskRun.objects.get(pk=run.pk)
    assert row.error_message == text and row.output == {"log": text}


@pytest.mark.parametrize(("field", "limit"), [("branch", 255), ("stage", 100)])
def test_column_limits_count_characters_not_bytes(api, run, field, limit):
    value = "é" * limit  # 2 bytes each in UTF-8
    assert api.patch(run_url(run), {field: value}, format="json").status_code == 200
    assert getattr(TaskRun.objects.get(pk=run.pk), field) == value
    before = snapshot(run)
    assert_rejected(
        api.patch(run_url(run), {field: value + "é"}, format="json"), before, run, code="max_length"
    )


def test_over_long_task_title_is_400(api, run):
    before = snapshot(run)
    response = api.post(tasks_url(run.project_id), {"title": "t" * 256}, format="json")
    assert_rejected(response, before, run, code="max_length")


# --- 12. wrong JSON types, hostile query strings -------------------------------------------


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"1", b"null", b"true", b"[{}]"])
@pytest.mark.parametrize(("name", "method", "url"), WRITE_ROUTES, ids=ROUTE_IDS)
def test_non_object_bodies_are_400(api, run, name, method, url, body):
    before = snapshot(run)
    assert_rejected(send(api, method, url(run), body), before, run)


@pytest.mark.parametrize(
    "query",
    [
        "limit=abc",
        "limit=-1",
        "offset=-5",
        "limit=99999999999999999999",
        "limit=0",
    ],
)
def test_hostile_pagination_is_answered(api, run, query):
    response = api.get(f"{runs_url(run.task)}?{query}")
    assert response.status_code == 200
    assert isinstance(response.json()["results"], list)
    assert api.get(f"{run_url(run, 'events')}?{query}").status_code == 200
    assert api.get(f"{tasks_url(run.project_id)}?{query}").status_code == 200


@pytest.mark.parametrize("offset", ["99999999999999999999999", "10000"])
def test_an_offset_past_the_count_limit_is_a_400_pointing_at_cursor_pages(api, run, offset):
    for url in (runs_url(run.task), run_url(run, "events"), tasks_url(run.project_id)):
        response = api.get(f"{url}?offset={offset}")
        assert response.status_code == 400, url
        assert error_codes(response) == {"offset": "offset_too_large"}
    assert api.get(f"{runs_url(run.task)}?offset=9999").status_code == 200


HUNDRED_KEYS = {f"k{i}": i for i in range(100)}


@pytest.mark.parametrize("room", [0, -1])
def test_the_state_size_limit_falls_at_the_same_byte_on_every_database(settings, api, run, room):
    """The rule book's measure (the state's jsonb text, taskruns.rules.state_size) decides on
    SQLite and in PostgreSQL's statement alike: a limit of exactly the size passes, one byte
    less is refused."""
    size = rules.state_size(HUNDRED_KEYS)
    settings.TASKRUNS = {**settings.TASKRUNS, "MAX_STATE_BYTES": size + room}
    before = snapshot(run)
    response = api.patch(run_url(run), {"state": HUNDRED_KEYS}, format="json")
    if room == 0:
        assert response.status_code == 200 and stored(run)["state"] == HUNDRED_KEYS
    else:
        assert_rejected(response, before, run, status=413, code="state_too_large")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@override_settings(TASKRUNS={"MAX_STATE_BYTES": 1000})
def test_a_too_large_state_in_autocommit_is_413_and_the_connection_goes_on(api, run):
    """As in production: the PATCH statement is its own transaction, and its error ends it."""
    before = snapshot(run)
    body = {"state": {f"k{i}": i for i in range(100)}, "stage": "build"}
    response = api.patch(run_url(run), body, format="json")
    assert_rejected(response, before, run, status=413, code="state_too_large")
    assert api.patch(run_url(run), {"state": {"k": 1}}, format="json").status_code == 200
    assert stored(run)["state"] == {"k": 1}


@pytest.mark.postgres
@override_settings(TASKRUNS={"MAX_STATE_BYTES": 1000})
def test_a_too_large_state_leaves_the_callers_transaction_usable(run):
    """Called inside the host's transaction, the failed statement rolls back to a savepoint."""
    from django.db import transaction

    from taskruns import updates
    from taskruns.exceptions import StateTooLarge

    with transaction.atomic():
        updates.update_run(run.pk, {"stage": "plan"})
        with pytest.raises(StateTooLarge):
            updates.update_run(run.pk, {"state": {f"k{i}": i for i in range(100)}})
        updates.update_run(run.pk, {"branch": "main"})
    assert (stored(run)["stage"], stored(run)["branch"], stored(run)["state"]) == ("plan", "main", {})
