"""A run's state and output go from the database into the response without being decoded
(taskruns.storedjson, taskruns.renderers): the client must see exactly the stored values,
and Python code reading the run must still see decoded ones."""

from __future__ import annotations

import datetime
import json

import pytest

from taskruns import signals, updates
from taskruns.models import TaskRun
from taskruns.storedjson import StoredJSON

from .conftest import run_url, runs_url

TRICKY_STATE = {
    "unicode": "héllo ✓ 日本",
    "separators": "a\u2028b\u2029c",  # valid JSON, but not JavaScript unless escaped, as DRF does
    "quotes": 'say "hi" \\ there\n\t',
    "big": 123456789012345678901234567890,
    "float": 0.1,
    "negative": -7,
    "nested": {"list": [1, None, True, {"deep": ["x"]}], "empty": {}},
    "stored-json-0": "stored-json-00000000000000000000000000000000-0",  # looks like a placeholder
}


def test_patch_response_carries_the_stored_state_exactly(api, run):
    response = api.patch(run_url(run), {"state": TRICKY_STATE, "output": {"o": [1, "✓"]}})
    assert response.status_code == 200
    assert b"\xe2\x80\xa8" not in response.content and b"\\u2028" in response.content
    body = json.loads(response.content)
    assert body["state"] == TRICKY_STATE
    assert body["output"] == {"o": [1, "✓"]}
    row = TaskRun.objects.get(pk=run.pk)
    assert row.state == TRICKY_STATE and row.output == {"o": [1, "✓"]}


@pytest.mark.parametrize("output", [None, "text", 3, [1, 2], {"a": None}])
def test_get_carries_every_kind_of_stored_output(api, run, output):
    TaskRun.objects.filter(pk=run.pk).update(state=TRICKY_STATE, output=output)
    response = api.get(run_url(run))
    assert response.status_code == 200
    assert response.json()["output"] == output
    assert response.json()["state"] == TRICKY_STATE


def test_pretty_printed_json_is_indented_throughout(api, run):
    TaskRun.objects.filter(pk=run.pk).update(state={"a": {"b": 1}})
    response = api.get(run_url(run), HTTP_ACCEPT="application/json; indent=4")
    assert response.status_code == 200
    assert '"state": {\n        "a": {\n            "b": 1' in response.content.decode()
    assert response.json()["state"] == {"a": {"b": 1}}


def test_the_browsable_api_shows_the_state_decoded(client, user, run):
    TaskRun.objects.filter(pk=run.pk).update(state={"visible-key": "visible-value"})
    client.force_login(user)
    response = client.get(run_url(run), HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    page = response.content.decode()
    assert "visible-key" in page and "StoredJSON" not in page and "stored-json-" not in page


def test_a_precondition_failure_carries_the_current_run(api, run):
    TaskRun.objects.filter(pk=run.pk).update(state=TRICKY_STATE)
    response = api.patch(run_url(run), {"stage": "x"}, HTTP_IF_MATCH='"999"')
    assert response.status_code == 412
    assert response.json()["run"]["state"] == TRICKY_STATE
    assert TaskRun.objects.get(pk=run.pk).stage is None


def test_python_code_reading_a_run_sees_decoded_values(run, django_capture_on_commit_callbacks):
    seen = []

    def receiver(sender, run, **kwargs):
        seen.append((run.state, run.output))

    signals.run_status_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            returned = updates.update_run(run.pk, {"status": "in_progress", "state": {"k": [1]}})
    finally:
        signals.run_status_changed.disconnect(receiver)
    assert seen == [({"k": [1]}, None)]
    assert returned.state == {"k": [1]}
    read = updates.read_run(run.pk, None)
    assert isinstance(read.__dict__["state"], StoredJSON)  # not decoded until read …
    assert read.state == {"k": [1]} and read.state is read.state  # … then decoded once
    assert not isinstance(read.__dict__["state"], StoredJSON)


def test_a_run_read_undecoded_saves_its_values(run):
    TaskRun.objects.filter(pk=run.pk).update(state={"k": 1}, output=[2])
    read = updates.read_run(run.pk, None)
    read.stage = "saved"
    read.save()
    row = TaskRun.objects.get(pk=run.pk)
    assert (row.state, row.output, row.stage) == ({"k": 1}, [2], "saved")


def test_a_list_page_carries_the_stored_values(api, run):
    TaskRun.objects.filter(pk=run.pk).update(state=TRICKY_STATE, output=None)
    other = updates.create_run(run.task)
    TaskRun.objects.filter(pk=other.pk).update(state={"n": 1}, output=[1, "✓"])
    response = api.get(runs_url(run.task), {"limit": 100})
    assert response.status_code == 200
    by_id = {item["id"]: item for item in response.json()["results"]}
    assert by_id[str(run.pk)]["state"] == TRICKY_STATE and by_id[str(run.pk)]["output"] is None
    assert by_id[str(other.pk)]["state"] == {"n": 1} and by_id[str(other.pk)]["output"] == [1, "✓"]


@pytest.mark.postgres
def test_a_run_read_by_hand_written_sql_equals_the_orms(run):
    """taskruns.rows reads the hot paths' rows with psycopg's own timestamp loader where
    Django's would give the same values: every field, time zones included, must agree."""
    TaskRun.objects.filter(pk=run.pk).update(started_at="2026-03-29T01:30:00.123456+01:00", stage="s")
    read, orm = updates.read_run(run.pk, None), TaskRun.objects.get(pk=run.pk)
    for field in TaskRun._meta.concrete_fields:
        mine, theirs = getattr(read, field.attname), getattr(orm, field.attname)
        assert mine == theirs, field.name
        if isinstance(theirs, datetime.datetime):
            assert mine.tzinfo is theirs.tzinfo and mine.utcoffset() == theirs.utcoffset(), field.name
