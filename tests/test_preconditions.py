"""ETags on run responses, If-Match on writes (412 with the current run), If-None-Match (304)."""

from __future__ import annotations

import pytest

from taskruns.models import TaskRun

from .conftest import run_url, stored


def test_every_run_response_carries_a_strong_etag_from_the_version(api, run):
    assert api.get(run_url(run))["ETag"] == f'"{run.version}"'
    response = api.patch(run_url(run), {"stage": "x"}, format="json")
    assert response["ETag"] == f'"{run.version + 1}"'
    assert api.post(run_url(run, "resume_in_cloud"))["ETag"] == f'"{run.version + 2}"'


def test_the_etag_changes_when_the_log_appears(api, run):
    before = api.get(run_url(run))["ETag"]
    api.post(run_url(run, "append_log"), {"entries": [{"a": 1}]}, format="json")
    after = api.get(run_url(run))
    assert after["ETag"] != before and after.json()["log_url"] is not None
    assert api.get(run_url(run), HTTP_IF_NONE_MATCH=before).status_code == 200


def test_if_none_match_with_the_current_tag_is_a_304(api, run):
    etag = api.get(run_url(run))["ETag"]
    response = api.get(run_url(run), HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304 and response["ETag"] == etag and not response.content
    assert api.get(run_url(run), HTTP_IF_NONE_MATCH=f"W/{etag}").status_code == 304
    api.patch(run_url(run), {"stage": "x"}, format="json")
    assert api.get(run_url(run), HTTP_IF_NONE_MATCH=etag).status_code == 200


def test_if_match_with_the_current_version_writes(api, run):
    etag = api.get(run_url(run))["ETag"]
    response = api.patch(run_url(run), {"state": {"a": 1}}, format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == 200
    assert TaskRun.objects.get(pk=run.pk).state == {"a": 1}


@pytest.mark.parametrize("header", ['"999"', 'W/"1"', "garbage", '"1-x"'])
def test_if_match_with_another_version_is_a_412_with_the_current_run(api, run, header):
    api.patch(run_url(run), {"stage": "moved on"}, format="json")
    before = stored(run)
    response = api.patch(run_url(run), {"state": {"lost": 1}}, format="json", HTTP_IF_MATCH=header)
    assert response.status_code == 412
    body = response.json()
    assert body["code"] == "precondition_failed" and body["current_status"] == "queued"
    assert body["run"]["version"] == before["version"] and body["run"]["stage"] == "moved on"
    assert response["ETag"] == f'"{before["version"]}"'
    assert stored(run) == before


def test_if_match_star_and_lists(api, run):
    assert api.patch(run_url(run), {"stage": "a"}, format="json", HTTP_IF_MATCH="*").status_code == 200
    current = TaskRun.objects.get(pk=run.pk).version
    header = f'"{current - 1}", "{current}"'
    assert api.patch(run_url(run), {"stage": "b"}, format="json", HTTP_IF_MATCH=header).status_code == 200


def test_a_stale_if_match_loses_to_a_newer_write(api, run):
    etag = api.get(run_url(run))["ETag"]
    assert (
        api.patch(run_url(run), {"state": {"first": 1}}, format="json", HTTP_IF_MATCH=etag).status_code == 200
    )
    response = api.patch(run_url(run), {"state": {"second": 1}}, format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == 412
    assert TaskRun.objects.get(pk=run.pk).state == {"first": 1}


def test_precondition_is_checked_before_the_transition_rule(api, run):
    TaskRun.objects.filter(pk=run.pk).update(status="cancelled")
    response = api.patch(run_url(run), {"status": "in_progress"}, format="json", HTTP_IF_MATCH='"999"')
    assert response.status_code == 412


@pytest.mark.parametrize(
    ("method", "action", "body"),
    [
        ("post", "resume_in_cloud", None),
        ("patch", "set_output", {"output": {"a": 1}}),
        ("post", "append_log", {"entries": [{"a": 1}]}),
    ],
)
def test_actions_honour_if_match(api, run, method, action, body):
    before = stored(run)
    response = getattr(api, method)(run_url(run, action), body, format="json", HTTP_IF_MATCH='"999"')
    assert response.status_code == 412 and response.json()["run"]["id"] == str(run.pk)
    assert stored(run) == before
    ok = getattr(api, method)(run_url(run, action), body, format="json", HTTP_IF_MATCH=f'"{run.version}"')
    assert ok.status_code == 200


def test_if_match_on_another_projects_run_is_still_a_404(api, run):
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from taskruns.keys import issue_key

    outsider = APIClient()
    outsider.credentials(
        HTTP_AUTHORIZATION=f"Bearer {issue_key(get_user_model().objects.create_user('o'), 'k')[1]}"
    )
    response = outsider.patch(run_url(run), {"stage": "x"}, format="json", HTTP_IF_MATCH='"999"')
    assert response.status_code == 404
