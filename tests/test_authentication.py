"""Authentication of the app's routes: DRF's authentication step, through the classes that
``TASKRUNS["AUTHENTICATION_CLASSES"]`` names, on every route and method, before the body is
read. A bad key is a 401 whatever else is wrong with the request, and nothing is written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication

from taskruns.authentication import ApiKeyAuthentication
from taskruns.keys import issue_key, revoke
from taskruns.models import ApiKey, Task, TaskRun, TaskRunEvent
from taskruns.parsers import TaskRunsJSONParser

from .conftest import bearer, error_codes, run_url, runs_url, stored, tasks_url


def wrong_secret(user, raw: str) -> str:
    """The same prefix (so the row is found) with another secret: only the hash differs."""
    return raw[:-1] + ("x" if raw[-1] != "x" else "y")


def revoked(user, raw: str) -> str:
    api_key, raw = issue_key(user, "revoked")
    revoke(ApiKey.objects.filter(pk=api_key.pk))
    return raw


def expired(user, raw: str) -> str:
    return issue_key(user, "expired", expires_at=timezone.now() - timedelta(seconds=1))[1]


def of_inactive_user(user, raw: str) -> str:
    raw = issue_key(user, "inactive")[1]
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    return raw


BAD_KEYS = {
    "wrong secret": wrong_secret,
    "unknown prefix": lambda user, raw: "trk_" + "q" * 43,
    "revoked": revoked,
    "expired": expired,
    "inactive user": of_inactive_user,
}

# Every route and method of the app, each as a request that a good key gets answered (the
# control test below checks the statuses), so that only the key can make it a 401.
ROUTES = {
    "task list (200)": lambda c, run: c.get(tasks_url(run.project_id)),
    "task create (201)": lambda c, run: c.post(tasks_url(run.project_id), {"title": "t"}),
    "task get (200)": lambda c, run: c.get(f"{tasks_url(run.project_id)}{run.task_id}/"),
    "task patch (200)": lambda c, run: c.patch(f"{tasks_url(run.project_id)}{run.task_id}/", {"title": "u"}),
    "task delete (204)": lambda c, run: c.delete(f"{tasks_url(run.project_id)}{run.task_id}/"),
    "task options (200)": lambda c, run: c.options(tasks_url(run.project_id)),
    "run list (200)": lambda c, run: c.get(runs_url(run.task)),
    "run create (201)": lambda c, run: c.post(runs_url(run.task), {}),
    "run get (200)": lambda c, run: c.get(run_url(run)),
    "run merge (200)": lambda c, run: c.patch(run_url(run), {"state": {"x": 1}}),
    "run move (200)": lambda c, run: c.patch(run_url(run), {"status": "in_progress"}),
    "run bad body (400)": lambda c, run: c.patch(run_url(run), {"status": "nonsense"}),
    "run malformed JSON (400)": lambda c, run: c.generic(
        "PATCH", run_url(run), "{", content_type="application/json"
    ),
    "run stale If-Match (412)": lambda c, run: c.patch(run_url(run), {"stage": "s"}, HTTP_IF_MATCH='"999"'),
    "unknown run (404)": lambda c, run: c.patch(
        run_url(run).replace(str(run.pk)[:8], "00000000"), {"stage": "s"}
    ),
    "run put (405)": lambda c, run: c.put(run_url(run), {}),
    "resume_in_cloud (200)": lambda c, run: c.post(run_url(run, "resume_in_cloud")),
    "set_output (200)": lambda c, run: c.patch(run_url(run, "set_output"), {"output": {"a": 1}}),
    "append_log (200)": lambda c, run: c.post(run_url(run, "append_log"), {"entries": [{"m": 1}]}),
    "logs (200)": lambda c, run: c.get(run_url(run, "logs")),
    "logs without slash (200)": lambda c, run: c.get(run_url(run) + "logs"),
    "events (200)": lambda c, run: c.get(run_url(run, "events")),
}


def expected_status(route: str) -> int:
    return int(route.rsplit("(", 1)[1].rstrip(")"))


def rows_now(run: TaskRun) -> tuple:
    return stored(run), TaskRunEvent.objects.count(), Task.objects.count(), TaskRun.objects.count()


@pytest.mark.parametrize("route", ROUTES)
def test_a_good_key_gets_each_route_answered(raw_key, run, route):
    """The control of the tests below: each request is refused there only for its key."""
    response = ROUTES[route](bearer(raw_key), run)
    assert response.status_code == expected_status(route), response.content


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("key_kind", BAD_KEYS)
def test_a_bad_key_is_a_401_on_every_route_and_writes_nothing(user, raw_key, run, key_kind, route):
    key = BAD_KEYS[key_kind](user, raw_key)
    before = rows_now(run)
    response = ROUTES[route](bearer(key), run)
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert error_codes(response) == {None: "invalid_api_key"}
    assert rows_now(run) == before


class RefusesKeysNamedSuspended(ApiKeyAuthentication):
    """A host's subclass: keys named "suspended" no longer authenticate."""

    def accepts(self, api_key):
        return super().accepts(api_key) and api_key.name != "suspended"


@pytest.fixture
def host_refuses_suspended_keys(settings):
    settings.TASKRUNS = {
        **settings.TASKRUNS,
        "AUTHENTICATION_CLASSES": [f"{__name__}.RefusesKeysNamedSuspended"],
    }


@pytest.mark.parametrize("route", ROUTES)
def test_a_host_subclass_that_refuses_a_key_is_honoured_on_every_route(
    host_refuses_suspended_keys, user, run, route
):
    suspended = issue_key(user, "suspended")[1]
    before = rows_now(run)
    response = ROUTES[route](bearer(suspended), run)
    assert response.status_code == 401, response.content
    assert rows_now(run) == before


@pytest.mark.parametrize("route", ["run get (200)", "run merge (200)", "task list (200)"])
def test_the_host_subclass_still_accepts_other_keys(host_refuses_suspended_keys, raw_key, run, route):
    assert ROUTES[route](bearer(raw_key), run).status_code == expected_status(route)


def test_a_bearer_value_of_another_scheme_is_a_401_not_an_error(run):
    response = bearer("eyJhbGciOiJIUzI1NiJ9.e30.signature").get(run_url(run))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert error_codes(response) == {None: "not_authenticated"}


class PartnerBearer(BaseAuthentication):
    """A host's own Bearer scheme, named after the app's key class in TASKRUNS."""

    def authenticate(self, request):
        if request.headers.get("Authorization") != "Bearer partner-token":
            return None
        return get_user_model().objects.get(username="member"), "partner"


def test_another_bearer_scheme_named_after_the_key_class_takes_its_tokens(settings, user, raw_key, run):
    settings.TASKRUNS = {
        **settings.TASKRUNS,
        "AUTHENTICATION_CLASSES": [
            "taskruns.authentication.ApiKeyAuthentication",
            f"{__name__}.PartnerBearer",
        ],
    }
    assert bearer("partner-token").get(run_url(run)).status_code == 200
    assert bearer(raw_key).get(run_url(run)).status_code == 200
    assert bearer("other-token").get(run_url(run)).status_code == 401


def test_a_key_that_expires_later_authenticates(user, run):
    raw = issue_key(user, "later", expires_at=timezone.now() + timedelta(hours=1))[1]
    assert bearer(raw).get(run_url(run)).status_code == 200


def test_a_bad_key_is_refused_before_the_body_is_parsed(monkeypatch, user, raw_key, run):
    parsed = []
    original = TaskRunsJSONParser.parse

    def counting_parse(self, *args, **kwargs):
        parsed.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TaskRunsJSONParser, "parse", counting_parse)
    big_body = {"state": {f"k{i}": "v" * 100 for i in range(5000)}}
    response = bearer(wrong_secret(user, raw_key)).patch(run_url(run), big_body)
    assert response.status_code == 401
    assert parsed == []
    assert bearer(raw_key).patch(run_url(run), {"state": {"a": 1}}).status_code == 200
    assert parsed == [1]


def test_the_apps_error_handler_is_its_own_whatever_the_hosts(settings, raw_key, run):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "EXCEPTION_HANDLER": "rest_framework.views.exception_handler",
    }
    response = bearer(raw_key).patch(run_url(run), {"status": "nonsense"})
    assert response.status_code == 400
    assert error_codes(response) == {"status": "invalid_choice"}


def test_a_host_may_name_another_error_handler_for_the_apps_routes(settings, raw_key, run):
    settings.TASKRUNS = {**settings.TASKRUNS, "EXCEPTION_HANDLER": "rest_framework.views.exception_handler"}
    response = bearer(raw_key).patch(run_url(run), {"status": "nonsense"})
    assert response.status_code == 400
    assert response.json()["status"][0].startswith('"nonsense" is not a valid choice')
