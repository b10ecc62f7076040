"""``manage.py taskruns_keys``: how a host provisions keys without the admin."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from taskruns.models import ApiKey

from .conftest import bearer, run_url


def keys(*args: str) -> str:
    out = StringIO()
    call_command("taskruns_keys", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_issue_prints_a_working_key_once_and_stores_only_its_hash(user, run):
    raw_key = keys("issue", user.get_username(), "--name", "ci agent").strip()
    assert raw_key.startswith("trk_")
    stored = ApiKey.objects.get(name="ci agent")
    assert stored.user == user and raw_key not in (stored.key_hash, stored.prefix)
    assert bearer(raw_key).get(run_url(run)).status_code == 200


def test_issue_limits_to_projects_and_sets_an_expiry(user, run):
    issued = json.loads(
        keys(
            "issue",
            user.get_username(),
            "--name",
            "n",
            "--project",
            str(run.project_id),
            "--expires-in-days",
            "3",
            "--json",
        )
    )
    stored = ApiKey.objects.get(prefix=issued["prefix"])
    assert list(stored.projects.values_list("pk", flat=True)) == [run.project_id]
    assert stored.expires_at is not None
    assert bearer(issued["key"]).get(run_url(run)).status_code == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["issue", "nobody", "--name", "n"], "No user 'nobody'"),
        (["issue", "member", "--name", "n", "--project", "999999"], "No project with id 999999"),
        (["issue", "member", "--name", "n", "--expires-in-days", "0"], "positive"),
        (["revoke", "trk_unknown1"], "No key with prefix trk_unknown1"),
    ],
)
def test_bad_arguments_are_clear_errors_and_change_nothing(user, args, message):
    before = ApiKey.objects.count()
    with pytest.raises(CommandError, match=message):
        keys(*args)
    assert ApiKey.objects.count() == before


def test_list_shows_active_keys_and_revoke_stops_one(user, run):
    issued = json.loads(keys("issue", user.get_username(), "--name", "to revoke", "--json"))
    listed = json.loads(keys("list", "--json"))
    assert issued["prefix"] in [row["prefix"] for row in listed]
    assert "key" not in listed[0] and "key_hash" not in listed[0]
    assert "Revoked 1 key(s)." in keys("revoke", issued["prefix"])
    assert bearer(issued["key"]).get(run_url(run)).status_code == 401
    assert issued["prefix"] not in [row["prefix"] for row in json.loads(keys("list", "--json"))]
    assert issued["prefix"] in [row["prefix"] for row in json.loads(keys("list", "--all", "--json"))]
