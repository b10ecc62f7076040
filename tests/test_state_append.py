"""``state_append`` on PATCH (design §4; PostHog's newer agents send it): the rule for each
kind of stored value, its order after removal and merge, unique keys, limits and protected keys.
Both databases; on PostgreSQL, sixteen concurrent appenders."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from taskruns.models import TaskRun, TaskRunEvent

from .conftest import bearer, error_codes, run_url, stored


def patch(api, run, body, status=200):
    response = api.patch(run_url(run), body)
    assert response.status_code == status, response.content
    return response


def state_of(run) -> dict:
    return TaskRun.objects.get(pk=run.pk).state


@pytest.mark.parametrize(
    ("stored_value", "item", "expected"),
    [
        ([1, 2], 3, [1, 2, 3]),
        ([], "x", ["x"]),
        (None, "x", ["x"]),
        ("scalar", "x", ["scalar", "x"]),
        (0, "x", [0, "x"]),
        ({"a": 1}, {"b": 2}, [{"a": 1}, {"b": 2}]),
        ([1], [2, 3], [1, [2, 3]]),  # a list item is one item
        ([1], None, [1, None]),
    ],
)
def test_each_kind_of_stored_value(api, run, stored_value, item, expected):
    TaskRun.objects.filter(pk=run.pk).update(state={"k": stored_value, "other": 1})
    body = patch(api, run, {"state_append": {"k": item}}).json()
    assert body["state"] == {"k": expected, "other": 1}
    assert state_of(run) == {"k": expected, "other": 1}


def test_a_missing_key_becomes_a_list_of_the_item(api, run):
    patch(api, run, {"state_append": {"ids": "r1"}})
    patch(api, run, {"state_append": {"ids": "r2"}})
    assert state_of(run) == {"ids": ["r1", "r2"]}


def test_appends_come_after_removal_and_merge_in_one_write(api, run):
    TaskRun.objects.filter(pk=run.pk).update(state={"a": [0], "b": "old", "c": [9]})
    version = stored(run)["version"]
    patch(
        api,
        run,
        {"state_remove_keys": ["a"], "state": {"b": [1]}, "state_append": {"a": 1, "b": 2, "c": 10}},
    )
    assert state_of(run) == {"a": [1], "b": [1, 2], "c": [9, 10]}
    assert stored(run)["version"] == version + 1


def test_appended_keys_are_named_in_the_history_of_a_move(api, run):
    patch(api, run, {"status": "in_progress", "state": {"s": 1}, "state_append": {"ids": "r1"}})
    event = TaskRunEvent.objects.filter(run=run, kind="status_changed").get()
    assert event.state_keys_set == ["ids", "s"]


def test_unique_keys_take_an_item_once(api, run, settings):
    settings.TASKRUNS = {**settings.TASKRUNS, "STATE_APPEND_UNIQUE_KEYS": ["gateway_request_ids"]}
    for request_id in ("g1", "g2", "g1", "g2", "g3"):
        patch(api, run, {"state_append": {"gateway_request_ids": request_id, "log": request_id}})
    assert state_of(run) == {"gateway_request_ids": ["g1", "g2", "g3"], "log": ["g1", "g2", "g1", "g2", "g3"]}


@pytest.mark.parametrize(
    ("held", "item", "appended"),
    [
        ([True], 1, True),  # JSON's true is not 1 (Python's True == 1 is)
        ([1], True, True),
        ([1], 1.0, False),  # 1 and 1.0 are the same JSON number
        ([0], False, True),
        ([{"a": 1, "b": [1, 2]}], {"b": [1, 2], "a": 1}, False),
        ([[1, 2]], [1, 2], False),
        ([[1, 2]], [1], True),
        (["1"], 1, True),
        ("x", "x", False),  # a scalar becomes a list: ["x"], without a second "x"
    ],
)
def test_unique_keys_compare_items_as_json(api, run, settings, held, item, appended):
    settings.TASKRUNS = {**settings.TASKRUNS, "STATE_APPEND_UNIQUE_KEYS": ["u"]}
    TaskRun.objects.filter(pk=run.pk).update(state={"u": held})
    patch(api, run, {"state_append": {"u": item}})
    before = held if isinstance(held, list) else [held]
    assert len(state_of(run)["u"]) == len(before) + (1 if appended else 0)


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"state_append": ["a"]}, "state_append", "not_an_object"),
        ({"state_append": "a"}, "state_append", "not_an_object"),
        ({"state_append": {"secret": 1}}, "state_append", "protected_key"),
    ],
)
def test_bad_appends_are_a_400_and_change_nothing(api, run, settings, body, field, code):
    settings.TASKRUNS = {**settings.TASKRUNS, "PROTECTED_STATE_KEYS": ["secret"]}
    before = stored(run)
    response = api.patch(run_url(run), body)
    assert response.status_code == 400
    assert error_codes(response) == {field: code}
    assert stored(run) == before


def test_appends_count_toward_the_limits(api, run, settings):
    settings.TASKRUNS = {**settings.TASKRUNS, "MAX_STATE_KEYS_PER_PATCH": 3, "MAX_STATE_BYTES": 200}
    before = stored(run)
    response = api.patch(run_url(run), {"state": {"a": 1, "b": 2}, "state_append": {"c": 1, "d": 2}})
    assert response.status_code == 400
    assert error_codes(response) == {"non_field_errors": "too_many_keys"}
    response = api.patch(run_url(run), {"state_append": {"big": "x" * 300}})
    assert response.status_code == 413
    assert error_codes(response) == {None: "state_too_large"}
    assert stored(run) == before


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("unique", [False, True])
def test_sixteen_concurrent_appenders_keep_every_item(run, raw_key, settings, unique):
    settings.TASKRUNS = {**settings.TASKRUNS, "STATE_APPEND_UNIQUE_KEYS": ["ids"] if unique else []}
    errors: list[object] = []
    barrier = threading.Barrier(16)

    def append(writer: int) -> None:
        client = bearer(raw_key)
        try:
            barrier.wait()
            for number in range(10):
                response = client.patch(run_url(run), {"state_append": {"ids": f"w{writer}-{number}"}})
                if response.status_code != 200:
                    errors.append(response.content)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=append, args=(writer,)) for writer in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    ids = state_of(run)["ids"]
    assert sorted(ids) == sorted(f"w{w}-{n}" for w in range(16) for n in range(10))
    for writer in range(16):  # each writer's items in the order it sent them
        mine = [item for item in ids if item.startswith(f"w{writer}-")]
        assert mine == [f"w{writer}-{n}" for n in range(10)]
