"""Behind a transaction-mode pooler (issue 19): what breaks there, and the start-up probe that
says which mode the app is in (taskruns.checks.check_pooler). Each test starts its own Debian
PgBouncer (tests/pgbouncer.py) in front of the test run's PostgreSQL server."""

from __future__ import annotations

import re
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from taskruns import checks, reaper

from .conftest import run_url, runs_url
from .pgbouncer import PgBouncer

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def bouncer():
    server_port = int(connection.settings_dict.get("PORT") or 5432)
    started = PgBouncer(server_port)
    started.start()
    try:
        yield started
    finally:
        started.stop()


def params_through(bouncer) -> dict:
    """The test database's connection parameters, through ``bouncer``."""
    return {**connection.get_connection_params(), "host": "127.0.0.1", "port": bouncer.port}


def test_the_probe_tells_a_transaction_pooler_from_a_direct_connection(bouncer):
    assert checks.transaction_pooler_between(connection.get_connection_params()) is False
    assert checks.transaction_pooler_between(params_through(bouncer)) is True


def test_prepared_statements_break_behind_pgbouncer_in_transaction_mode(bouncer):
    """Why the production profile turns them off: a statement psycopg prepared on one server
    connection is unknown on the next (PgBouncer 1.18, as Debian ships it)."""
    params = {k: v for k, v in params_through(bouncer).items() if k not in ("cursor_factory", "context")}
    preparing = {**params, "prepare_threshold": 0}  # prepare every statement at once
    with psycopg.connect(**preparing, autocommit=True) as agent, psycopg.connect(**params) as other:
        agent.execute("SELECT %s::int", [1])  # prepared on server connection A, which is freed
        other.execute("SELECT 1")  # another client takes A and keeps it
        with pytest.raises(psycopg.Error, match="prepared statement"):
            for number in range(2, 5):
                agent.execute("SELECT %s::int", [number])  # runs on B: not prepared there
        other.rollback()


@pytest.mark.parametrize(("threshold", "expected"), [(None, "taskruns.I004"), (5, "taskruns.W005")])
def test_the_start_up_check_says_which_mode_the_app_is_in(monkeypatch, settings, threshold, expected):
    monkeypatch.setattr(checks, "transaction_pooler_between", lambda params: True)
    monkeypatch.setitem(
        connection.settings_dict,
        "OPTIONS",
        {**connection.settings_dict["OPTIONS"], "prepare_threshold": threshold},
    )
    assert [message.id for message in checks.check_pooler(databases=["default"])] == [expected]
    # Without the database tag's run (plain `check`), it asks nothing.
    assert checks.check_pooler(databases=None) == []


def test_the_start_up_check_is_silent_on_a_direct_connection():
    assert checks.check_pooler(databases=["default"]) == []


SESSION_STATE = re.compile(
    r"^\s*(SET\s+(?!LOCAL\b)|RESET\b|LISTEN\b|PREPARE\b|DECLARE\b.*\bWITH HOLD\b)"
    r"|pg_advisory_lock|\bTEMP(ORARY)?\s+TABLE\b",
    re.I,
)


def test_no_request_leaves_session_state_on_its_connection(api, run, task, settings):
    """What a transaction-mode pooler cannot carry from one transaction to the next: session
    SETs, session advisory locks, temporary tables, LISTEN, held cursors, named PREPAREs. None of
    the app's requests sends any (a timeout must be SET LOCAL or set_config(…, true))."""
    settings.TASKRUNS = {**settings.TASKRUNS, "HEARTBEAT_TIMEOUT": 1}
    calls = [
        lambda: api.get(run_url(run)),
        lambda: api.patch(run_url(run), {"status": "in_progress", "state": {"a": 1}}),
        lambda: api.patch(run_url(run), {"state": {"b": 2}, "state_remove_keys": ["a"]}),
        lambda: api.post(run_url(run, "heartbeat")),
        lambda: api.post(run_url(run, "append_log"), {"entries": [{"n": 1}]}),
        lambda: api.get(run_url(run, "logs")),
        lambda: api.get(runs_url(task), {"status": "in_progress", "cursor": ""}),
        lambda: api.get(runs_url(task), {"changes_after": "0"}),
        lambda: api.post(run_url(run, "cancel"), {"reason": "stop"}),
        lambda: reaper.reap(now=timezone.now() + timedelta(hours=1)),
        lambda: api.post(run_url(run, "resume_in_cloud")),
    ]
    sent: list[str] = []

    def record(execute, sql, params, many, context):
        sent.append(sql)  # the SQL as handed to the driver, before it is sent
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        for call in calls:
            call()
    assert len(sent) > 20
    assert [statement for statement in sent if SESSION_STATE.search(statement)] == []
