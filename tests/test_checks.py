"""System checks on TASKRUNS (taskruns.E00x)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from taskruns.checks import CHECKED_KEYS, check_fast_paths, check_schema_settings, check_settings
from taskruns.conf import DEFAULTS


@pytest.mark.parametrize(
    ("config", "check_id"),
    [
        ("nope", "taskruns.E001"),
        ({"PROTECTED_STATE_KEYS": "token"}, "taskruns.E003"),
        ({"RESUME_CLEAR_STATE_KEYS": [1]}, "taskruns.E003"),
        ({"CLOUD_STARTER": "no.such.module.start"}, "taskruns.E004"),
        ({"ACCESS_POLICY": "taskruns.access.Missing"}, "taskruns.E004"),
        ({"CLOUD_STARTER": "taskruns.conf.DEFAULTS"}, "taskruns.E004"),
        ({"SPELLING_MISTAKE": 1}, "taskruns.W001"),
        ({"EXCEPTION_HANDLER": "no.such.handler"}, "taskruns.E004"),
        ({"AUTHENTICATION_CLASSES": "taskruns.authentication.ApiKeyAuthentication"}, "taskruns.E005"),
        ({"AUTHENTICATION_CLASSES": ["no.such.Class"]}, "taskruns.E005"),
        ({"PERMISSION_CLASSES": ["taskruns.conf.DEFAULTS"]}, "taskruns.E005"),
        ({"MAX_STATE_BYTES": 0}, "taskruns.E006"),
        ({"LOG_MAX_ENTRIES_PER_RUN": "many"}, "taskruns.E006"),
        ({"MAX_JSON_DEPTH": True}, "taskruns.E006"),
        ({"HEARTBEAT_TIMEOUT": 0}, "taskruns.E007"),
        ({"HEARTBEAT_TIMEOUT": "60"}, "taskruns.E007"),
        ({"QUEUED_TTL": 1.5}, "taskruns.E007"),
        ({"LIVENESS_CHECK": "no.such.check"}, "taskruns.E004"),
    ],
)
def test_bad_settings_are_reported(config, check_id):
    with override_settings(TASKRUNS=config):
        assert check_id in {message.id for message in check_settings()}


def test_the_demo_settings_pass():
    assert check_settings() == []


@pytest.mark.django_db  # Django 6.1's check command also asks the database
def test_an_error_stops_manage_py():
    with override_settings(TASKRUNS={"CLOUD_STARTER": "no.such.thing"}), pytest.raises(SystemCheckError):
        call_command("check")


def test_missing_enum_names_in_the_schema_settings_are_a_warning(settings):
    settings.SPECTACULAR_SETTINGS = {**settings.SPECTACULAR_SETTINGS, "ENUM_NAME_OVERRIDES": {}}
    assert [message.id for message in check_schema_settings()] == ["taskruns.W002"]


def test_the_demo_schema_settings_pass():
    assert check_schema_settings() == []


def test_every_setting_has_a_check():
    assert set(DEFAULTS) == CHECKED_KEYS


def test_a_router_that_sends_the_runs_elsewhere_is_named(settings):
    settings.DATABASE_ROUTERS = [f"{__name__}.RunsElsewhere"]
    assert "taskruns.I003" in {message.id for message in check_fast_paths()}


class RunsElsewhere:
    def db_for_write(self, model, **hints):
        return "archive" if model._meta.app_label == "taskruns" else None


@pytest.mark.postgres
def test_the_prepared_statement_mode_is_named(monkeypatch):
    from django.conf import settings

    messages = {message.id: message.msg for message in check_fast_paths()}
    assert "after 5 runs" in messages["taskruns.I001"]  # the demo settings' prepare_threshold
    monkeypatch.setitem(settings.DATABASES["default"]["OPTIONS"], "prepare_threshold", None)
    assert check_fast_paths()[-1].msg.startswith("Prepared statements are off")


@pytest.mark.postgres
def test_another_access_policy_is_named(settings):
    settings.TASKRUNS = {**settings.TASKRUNS, "ACCESS_POLICY": "tests.test_checks.Everyone"}
    assert "taskruns.I002" in {message.id for message in check_fast_paths()}


class Everyone:
    def visible_projects(self, user):
        from taskruns.models import Project

        return Project.objects.all()
