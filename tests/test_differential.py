"""The two executors of the rule book agree: random sequences of PATCHes applied through the
Python executor and through PostgreSQL's one statement give the same rows, the same errors and
the same history (taskruns.executors, taskruns.rules).

Each example starts two identical runs (a random status and environment), then sends both the
same PATCHes — every field, removals of absent keys, a key both removed and sent, terminal moves,
current and stale If-Match versions, states at and past a small size limit, appends (to lists,
scalars, missing and removed keys, unique keys among them), non-ASCII text,
floats and large integers, runs that start with a pending cancel request and an error code
(which entering an active status clears) — one through each executor with the same clock.
After every PATCH the outcome (the error's class, code and extras, or success) and the stored
row (JSON as PostgreSQL prints it) must be equal, and at the end so must the history.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskruns import rules
from taskruns.exceptions import OutputTooLarge, TaskRunsError
from taskruns.executors import PostgresExecutor, PythonExecutor
from taskruns.history import SYSTEM
from taskruns.models import TaskRun, TaskRunEnvironment, TaskRunEvent, TaskRunStatus

pytestmark = pytest.mark.postgres

#: Examples per CI run of each property (Hypothesis draws new ones every run).
EXAMPLES = 300
#: A small state limit, so that sequences reach it and cross it.
STATE_LIMIT = 400

KEYS = st.sampled_from(["a", "b", "c", "ключ", "", "a.b", "x y", "🔑"])
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
OPTIONAL_TEXT = st.none() | TEXT.filter(bool)
# Most PATCHes move the status, between in_progress and queued more often than not, so that
# sequences leave and re-enter statuses (started_at is set only the first time) and end runs.
S = TaskRunStatus
STATUS = st.sampled_from([None, S.IN_PROGRESS, S.QUEUED, S.IN_PROGRESS, S.QUEUED, *S.values])
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "environment": st.just(TaskRunEnvironment.LOCAL),
        "stage": OPTIONAL_TEXT,
        "branch": OPTIONAL_TEXT,
        "error_message": st.none() | TEXT,
        "output": JSON,
        "state": st.dictionaries(KEYS, JSON, max_size=4),
        "state_remove_keys": st.lists(KEYS, min_size=1, max_size=3),
        "state_append": st.dictionaries(KEYS, JSON, max_size=3),
    },
)
PATCH = st.builds(
    lambda status, fields: fields if status is None else {"status": status, **fields}, STATUS, FIELDS
)
# None: no If-Match; 0: the current version; 1: a stale one.
STEP = st.tuples(PATCH, st.sampled_from([None, None, 0, 1]))


def row_of(run_id) -> tuple:
    """Every column a PATCH writes, JSON as PostgreSQL prints it (updated_at aside: Django's
    auto_now sets it on save)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, environment, stage, branch, error_message, output::text, state::text, "
            "version, started_at, completed_at, status_changed_at, cancel_requested_at, error_code "
            f"FROM {TaskRun._meta.db_table} WHERE id = %s",
            [run_id],
        )
        return cursor.fetchone()


def history_of(run_id) -> list[tuple]:
    return list(
        TaskRunEvent.objects.filter(run_id=run_id)
        .order_by("id")
        .values_list("kind", "from_value", "to_value", "state_keys_set", "state_keys_removed", "via")
    )


def outcome(executor, run_id, plan, if_match, now) -> tuple:
    try:
        executor.patch(run_id, plan, scope=None, if_match=if_match, now=now, actor=SYSTEM)
    except TaskRunsError as error:
        extra = {key: value for key, value in error.extra.items() if key != "run"}
        return (type(error).__name__, error.status_code, str(error.detail), sorted(extra.items()))
    return ("ok",)


#: A run's lifecycle columns at the start: none set, or a pending cancel request and a
#: server-set error code from an earlier attempt (which entering an active status clears).
LIFECYCLE = st.sampled_from([{}, {"cancel_requested_at": "past", "error_code": "heartbeat_timeout"}])


@pytest.fixture
def twin_runs(task):
    def make(status: str, environment: str, lifecycle: dict) -> tuple[TaskRun, TaskRun]:
        past = timezone.now() - timedelta(days=1)
        columns = {name: past if value == "past" else value for name, value in lifecycle.items()}
        return tuple(
            TaskRun.objects.create(
                task=task,
                project_id=task.project_id,
                status=status,
                environment=environment,
                status_changed_at=past,
                **columns,
            )
            for _ in range(2)
        )

    return make


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    start=st.tuples(
        st.sampled_from(TaskRunStatus.values), st.sampled_from(TaskRunEnvironment.values), LIFECYCLE
    ),
    steps=st.lists(STEP, min_size=1, max_size=8),
)
def test_both_executors_give_the_same_rows_errors_and_history(settings_limit, twin_runs, start, steps):
    by_python, by_postgres = twin_runs(*start)
    now = timezone.now()
    for number, (changes, precondition) in enumerate(steps):
        plan = rules.plan_for(changes)
        version = TaskRun.objects.get(pk=by_python.pk).version
        if_match = None if precondition is None else {version + precondition}
        moment = now + timedelta(seconds=number)
        python = outcome(PythonExecutor("default"), by_python.pk, plan, if_match, moment)
        postgres = outcome(PostgresExecutor("default"), by_postgres.pk, plan, if_match, moment)
        assert python == postgres, (number, changes)
        assert row_of(by_python.pk) == row_of(by_postgres.pk), (number, changes)
    assert history_of(by_python.pk) == history_of(by_postgres.pk)


#: state_append keys that take an item only once (the others: any key of KEYS).
UNIQUE_APPEND_KEYS = ["a", "ключ", ""]


@pytest.fixture
def settings_limit(settings):
    settings.TASKRUNS = {
        **settings.TASKRUNS,
        "MAX_STATE_BYTES": STATE_LIMIT,
        "STATE_APPEND_UNIQUE_KEYS": UNIQUE_APPEND_KEYS,
    }


@settings(
    max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.dictionaries(TEXT, JSON, max_size=5))
def test_the_state_size_is_postgresqls_jsonb_text_length(db, value):
    """rules.state_size (the Python executor's measure) against octet_length(state::text)
    (the statement's), on any state a client can send."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT octet_length(%s::jsonb::text)", [json.dumps(value, ensure_ascii=False)])
        (in_postgres,) = cursor.fetchone()
    assert rules.state_size(value) == in_postgres


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.dictionaries(TEXT, JSON, max_size=5))
def test_the_output_limit_falls_at_the_same_byte_in_python_and_in_the_statement(db, value):
    """rules.check_output_size (the Python executor, set_output) and taskruns_output_within (the
    one-statement PATCH) accept an output of exactly the limit and refuse it one byte under."""
    size = rules.state_size(value)
    text = json.dumps(value, ensure_ascii=False)
    rules.check_output_size(value, size)
    with connection.cursor() as cursor:
        cursor.execute("SELECT taskruns_output_within(%s::jsonb, %s) IS NOT NULL", [text, size])
        assert cursor.fetchone() == (True,)
    with pytest.raises(OutputTooLarge):
        rules.check_output_size(value, size - 1)
    with pytest.raises(DatabaseError) as refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT taskruns_output_within(%s::jsonb, %s)", [text, size - 1])
    assert refused.value.__cause__.sqlstate == "TR414"


@settings(
    max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    a=JSON,
    b=JSON,
    twin=st.sampled_from([None, "same", "reordered"]),
)
def test_json_equality_is_postgresqls(db, a, b, twin):
    """rules.json_equal (the Python executor's test for a unique key's duplicate) against
    jsonb's ``=`` (the statement's), on any two values a client can send; half the time on a
    value and its own copy or a copy with its objects' keys reordered."""
    if twin == "same":
        b = json.loads(json.dumps(a))
    elif twin == "reordered":
        b = json.loads(json.dumps(a, sort_keys=True))
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::jsonb = %s::jsonb", [json.dumps(a), json.dumps(b)])
        (in_postgres,) = cursor.fetchone()
    assert rules.json_equal(a, b) == in_postgres, (a, b)
