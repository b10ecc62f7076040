"""The deployment profile passes `check --deploy`, and secrets stay out of logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

from rest_framework.test import APIClient

from taskruns import keys

from .conftest import run_url, runs_url

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings_production",
    "DJANGO_SECRET_KEY": "n7$Kq2!vX9#pL4@wZ8^mR3&tY6*hB1(cF5)jD0_gS2+eA7-uQ9=iO4~xN8%",
    "DJANGO_ALLOWED_HOSTS": "taskruns.example.com",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True
    )


def test_check_deploy_is_clean_with_the_production_profile():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    # On PostgreSQL the app names its prepared-statement mode (an Info, taskruns.I001); nothing else.
    output = result.stdout + result.stderr
    issues = [line for line in output.splitlines() if line.startswith("?:") or ": (" in line]
    assert all("(taskruns.I001)" in line for line in issues), output
    assert "no issues" in output or "identified 1 issue" in output


def test_the_production_profile_refuses_to_start_without_its_secret():
    result = manage("check", **{**PRODUCTION_ENV, "DJANGO_SECRET_KEY": ""})
    assert result.returncode != 0 and "DJANGO_SECRET_KEY must be set" in result.stderr


def test_each_missing_variable_is_one_clear_line_not_a_traceback():
    result = manage(
        "check", "--deploy", **{**PRODUCTION_ENV, "DJANGO_SECRET_KEY": "", "DJANGO_ALLOWED_HOSTS": ""}
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "DJANGO_SECRET_KEY must be set for the production settings (config.settings_production).",
        "DJANGO_ALLOWED_HOSTS must be set for the production settings (config.settings_production).",
    ]


def test_the_demo_profile_is_not_deployable():
    result = manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0  # DEBUG on, demo secret: check --deploy says so


def test_looked_up_keys_are_compared_in_constant_time(run, raw_key):
    # The runs list authenticates by looking the key up (a run's GET and PATCH on PostgreSQL
    # let their statement compare the hash instead: tests/test_key_in_statement.py).
    with mock.patch.object(keys.hmac, "compare_digest", wraps=keys.hmac.compare_digest) as compare:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        assert client.get(runs_url(run.task)).status_code == 200
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key[:-1]}x")
        assert client.get(runs_url(run.task)).status_code == 401
    assert compare.call_count == 2


def test_no_key_or_hash_reaches_the_logs(run, raw_key, caplog, settings):
    settings.DEBUG = True  # also log SQL (django.db.backends), the most likely place for a leak
    caplog.set_level(logging.DEBUG)
    for key in (raw_key, raw_key[:-1] + "x", "trk_" + "z" * 43):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        client.get(run_url(run))
        client.patch(run_url(run), {"state": {"a": 1}}, format="json")
    assert caplog.records  # the requests were logged at all
    text = caplog.text
    assert raw_key not in text and keys.hash_key(raw_key) not in text
    assert raw_key[len(keys.KEY_MARK) + 8 :] not in text  # not even the secret part after the prefix


def prepare_threshold_of(**env: str) -> str:
    """psycopg's prepare_threshold in force for a PostgreSQL DATABASE_URL under ``env``."""
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; "
        "print(settings.DATABASES['default']['OPTIONS']['prepare_threshold'])",
        DATABASE_URL="postgres://postgres@127.0.0.1:6432/anything",
        **env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]  # after what the shell says it imported


def test_the_production_profile_prepares_nothing_unless_told_so():
    """Safe behind a transaction-mode pooler by default (README "Deploying")."""
    assert prepare_threshold_of(**PRODUCTION_ENV) == "None"
    assert prepare_threshold_of(**PRODUCTION_ENV, DJANGO_DB_PREPARE_THRESHOLD="5") == "5"
    # The demo, which talks to PostgreSQL directly, prepares after five runs unless told not to.
    assert prepare_threshold_of(DJANGO_SETTINGS_MODULE="config.settings") == "5"
    assert (
        prepare_threshold_of(DJANGO_SETTINGS_MODULE="config.settings", DJANGO_DB_PREPARE_THRESHOLD="off")
        == "None"
    )
