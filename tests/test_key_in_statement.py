"""A run's GET and PATCH check the caller's Bearer key in their own statement (PostgreSQL).

No lookup of the key comes first, so these tests hold the statement to everything that lookup
and DRF's permission check would have refused: every bad key is a 401 whatever else is wrong
with the request, and nothing is written.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission, IsAuthenticated

from taskruns import authentication
from taskruns.authentication import ApiKeyAuthentication
from taskruns.keys import issue_key, revoke
from taskruns.models import ApiKey, Project, TaskRun, TaskRunEvent
from taskruns.views import TaskRunViewSet

from .conftest import bearer, run_url, runs_url, statements_of, stored

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def used_key(user, run) -> str:
    """A key whose last use is already recorded, so requests write nothing but their change."""
    raw = issue_key(user, "agent")[1]
    assert bearer(raw).get(run_url(run)).status_code == 200
    return raw


def test_a_patch_is_one_statement_that_checks_the_key(used_key, run):
    response, queries = statements_of(lambda: bearer(used_key).patch(run_url(run), {"state": {"a": 1}}))
    assert response.status_code == 200 and response.json()["state"] == {"a": 1}
    assert len(queries) == 1, queries
    assert queries[0].startswith("UPDATE") and "k.key_hash" in queries[0]
    assert TaskRun.objects.get(pk=run.pk).state == {"a": 1}


def test_a_get_is_one_statement_that_checks_the_key(used_key, run):
    response, queries = statements_of(lambda: bearer(used_key).get(run_url(run)))
    assert response.status_code == 200 and response.json()["id"] == str(run.pk)
    assert len(queries) == 1 and "k.key_hash" in queries[0], queries


def wrong_hash(raw: str) -> str:
    """The same prefix (so the row is found) with another secret: only the hash differs."""
    return raw[:-1] + ("x" if raw[-1] != "x" else "y")


def revoked(user) -> str:
    api_key, raw = issue_key(user, "revoked")
    revoke(ApiKey.objects.filter(pk=api_key.pk))
    return raw


def of_inactive_user(user) -> str:
    raw = issue_key(user, "inactive")[1]
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    return raw


BAD_KEYS = {
    "wrong secret": lambda user, raw: wrong_hash(raw),
    "unknown prefix": lambda user, raw: "trk_" + "q" * 43,
    "revoked": lambda user, raw: revoked(user),
    "inactive user": lambda user, raw: of_inactive_user(user),
}
# What the request would get with a good key: the bad key must turn each into a 401.
REQUESTS = {
    "merge (200)": lambda client, run: client.patch(run_url(run), {"state": {"x": 1}}),
    "move (200)": lambda client, run: client.patch(run_url(run), {"status": "in_progress"}),
    "bad body (400)": lambda client, run: client.patch(run_url(run), {"status": "nonsense"}),
    "malformed JSON (400)": lambda client, run: client.generic(
        "PATCH", run_url(run), "{", content_type="application/json"
    ),
    "refused move (409)": lambda client, run: client.patch(run_url(run), {"status": "queued"}),
    "stale If-Match (412)": lambda client, run: client.patch(
        run_url(run), {"stage": "s"}, HTTP_IF_MATCH='"999"'
    ),
    "unknown run (404)": lambda client, run: client.patch(
        run_url(run).replace(str(run.pk)[:8], "00000000"), {"stage": "s"}
    ),
    "get (200)": lambda client, run: client.get(run_url(run)),
    "get unknown run (404)": lambda client, run: client.get(
        run_url(run).replace(str(run.pk)[:8], "00000000")
    ),
}


@pytest.mark.parametrize("request_kind", REQUESTS)
@pytest.mark.parametrize("key_kind", BAD_KEYS)
def test_a_bad_key_is_a_401_before_anything_else_and_writes_nothing(
    user, raw_key, run, key_kind, request_kind
):
    if request_kind == "refused move (409)":
        TaskRun.objects.filter(pk=run.pk).update(status="completed")
    key = BAD_KEYS[key_kind](user, raw_key)
    before, events = stored(run), TaskRunEvent.objects.count()
    response = REQUESTS[request_kind](bearer(key), run)
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["errors"][0]["code"] in {"invalid_api_key", "authentication_failed"}
    assert stored(run) == before and TaskRunEvent.objects.count() == events


@pytest.mark.parametrize("request_kind", REQUESTS)
def test_with_a_good_key_the_same_requests_answer_as_they_say(raw_key, run, request_kind):
    """The control of the test above: each request is refused only for its key."""
    if request_kind == "refused move (409)":
        TaskRun.objects.filter(pk=run.pk).update(status="completed")
    expected = int(request_kind.rsplit("(", 1)[1].rstrip(")"))
    assert REQUESTS[request_kind](bearer(raw_key), run).status_code == expected


def test_a_key_limited_to_another_project_reaches_nothing(user, run):
    elsewhere = Project.objects.create(name="Elsewhere")
    elsewhere.members.add(user)
    api_key, raw = issue_key(user, "limited", projects=[elsewhere])
    before = stored(run)
    assert bearer(raw).patch(run_url(run), {"state": {"x": 1}}).status_code == 404
    assert bearer(raw).get(run_url(run)).status_code == 404
    assert stored(run) == before


def test_a_key_of_a_user_who_left_the_project_reaches_nothing(user, raw_key, run):
    Project.objects.get(pk=run.project_id).members.remove(user)
    before = stored(run)
    assert bearer(raw_key).patch(run_url(run), {"state": {"x": 1}}).status_code == 404
    assert stored(run) == before


def test_a_status_move_records_who_made_it(user, raw_key, run):
    api_key = ApiKey.objects.get(user=user)
    response, queries = statements_of(lambda: bearer(raw_key).patch(run_url(run), {"status": "in_progress"}))
    assert response.status_code == 200
    event = TaskRunEvent.objects.get(run=run, kind="status_changed")
    assert (event.actor_user_id, event.actor_api_key_id, event.via) == (user.pk, api_key.pk, "api")
    # The history needs the caller, so the key is looked up: the lookup, its last use, the write.
    assert [q.split()[0] for q in queries] == ["SELECT", "UPDATE", "WITH"], queries


def test_the_first_use_of_a_key_is_recorded_once(user, run):
    api_key, raw = issue_key(user, "fresh")
    first, first_queries = statements_of(lambda: bearer(raw).get(run_url(run)))
    second, second_queries = statements_of(lambda: bearer(raw).get(run_url(run)))
    assert first.status_code == second.status_code == 200
    assert len(first_queries) == 2 and first_queries[1].startswith('UPDATE "taskruns_apikey"'), first_queries
    assert len(second_queries) == 1, second_queries  # remembered: no write for minutes
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at is not None


def test_another_process_recording_the_use_is_not_repeated(user, run):
    api_key, raw = issue_key(user, "shared")
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at="2030-01-01T00:00:00Z")  # just now, elsewhere
    assert bearer(raw).get(run_url(run)).status_code == 200
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at.year == 2030  # not older: left alone


def test_memory_of_recorded_uses_is_bounded(user, run, monkeypatch):
    monkeypatch.setattr(authentication, "_RECORDED_USES_MAX", 2)
    for number in range(3):
        assert bearer(issue_key(user, f"k{number}")[1]).get(run_url(run)).status_code == 200
    assert len(authentication._RECORDED_USES) <= 2


class Nobody(BasePermission):
    def has_permission(self, request, view):
        return False


def test_a_host_permission_is_still_checked(raw_key, run, monkeypatch):
    monkeypatch.setattr(TaskRunViewSet, "permission_classes", [IsAuthenticated, Nobody])
    before = stored(run)
    response, queries = statements_of(lambda: bearer(raw_key).patch(run_url(run), {"state": {"x": 1}}))
    assert response.status_code == 403
    assert stored(run) == before
    assert not any(q.startswith("UPDATE taskruns_taskrun") for q in queries)


def test_another_authenticator_first_authenticates_as_usual(raw_key, run, monkeypatch):
    monkeypatch.setattr(
        TaskRunViewSet, "authentication_classes", [SessionAuthentication, ApiKeyAuthentication]
    )
    response, queries = statements_of(lambda: bearer(raw_key).patch(run_url(run), {"state": {"x": 1}}))
    assert response.status_code == 200
    assert queries[0].startswith("SELECT k."), queries  # the usual lookup
    assert "k.key_hash" not in queries[-1]
    assert TaskRun.objects.get(pk=run.pk).state == {"x": 1}


def test_other_actions_and_the_list_authenticate_as_usual(raw_key, run):
    response, queries = statements_of(lambda: bearer(raw_key).get(runs_url(run.task)))
    assert response.status_code == 200
    assert queries[0].startswith("SELECT k."), queries
    response = bearer(wrong_hash(raw_key)).post(run_url(run, "append_log"), {"entries": [{"a": 1}]})
    assert response.status_code == 401


def test_a_host_can_turn_it_off(raw_key, run, settings):
    settings.TASKRUNS = {"CHECK_KEYS_IN_STATEMENTS": False}
    response, queries = statements_of(lambda: bearer(raw_key).patch(run_url(run), {"state": {"x": 1}}))
    assert response.status_code == 200
    assert queries[0].startswith("SELECT k.") and "k.key_hash" not in queries[-1], queries
    assert TaskRun.objects.get(pk=run.pk).state == {"x": 1}
    assert bearer(wrong_hash(raw_key)).patch(run_url(run), {"state": {"y": 1}}).status_code == 401


def test_a_key_check_keeps_its_secrets_out_of_its_repr(raw_key):
    from taskruns.access import key_check
    from taskruns.keys import hash_key

    check = key_check(raw_key)
    assert check is not None and check.raw_key == raw_key
    assert raw_key not in repr(check) and hash_key(raw_key) not in repr(check)
    assert raw_key[:12] in repr(check)  # the prefix is public
