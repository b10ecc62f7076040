"""Schema fuzzing: schemathesis generates requests for every operation of the app's own OpenAPI
document (served by the demo at /api/schema/) and checks every answer against it.

Checked for every response: no 5xx, a status the operation documents, the documented content
type, and a body that matches the documented schema. Not checked: `positive_data_acceptance`
(that every schema-valid body gets a 2xx) — some rules cannot be said in OpenAPI (the transition
table, "state must be an object", blank branch names), and the API answers them with a
documented 4xx by design. Two passes: one with the generated path ids (mostly unknown ids: the
404 paths), one aimed at a real project, task and run (the data paths). The number of examples
per operation is bounded (TASKRUNS_FUZZ_EXAMPLES, default 25) so CI stays fast. A third test
follows the links schemathesis infers between operations, in sequences of up to 10 calls
(TASKRUNS_FUZZ_SEQUENCES, default 30 sequences).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application

EXAMPLES = int(os.environ.get("TASKRUNS_FUZZ_EXAMPLES", "25"))
STATEFUL_EXAMPLES = int(os.environ.get("TASKRUNS_FUZZ_SEQUENCES", "30"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples on every run: a CI failure can be replayed
)


@pytest.fixture(autouse=True)
def keep_the_test_transaction():
    """Schemathesis calls the WSGI app directly, and Django closes the database connection at
    the end of each request — here the connection holding the test's transaction. Django's own
    test client suspends that for the same reason; so does this."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def short_streams(settings):
    """A stream served in-process under WSGI polls until STREAM_WSGI_MAX_SECONDS: ended at once
    here, so that each generated stream request is one read (its frames are still validated)."""
    settings.TASKRUNS = {**settings.TASKRUNS, "STREAM_WSGI_MAX_SECONDS": 0.01, "STREAM_POLL_SECONDS": 0.01}


@pytest.fixture
def target(run, raw_key):
    return {"run": run, "headers": {"Authorization": f"Bearer {raw_key}"}}


@pytest.mark.django_db
@schema.parametrize()
@fuzz_settings
def test_generated_ids(case, target):
    case.call_and_validate(headers=target["headers"], checks=CHECKS, excluded_checks=[])


@pytest.mark.django_db
@schema.parametrize()
@fuzz_settings
def test_real_ids(case, target):
    run = target["run"]
    real = {"project_id": run.project_id, "task_id": str(run.task_id), "id": str(run.pk)}
    if case.path_parameters:
        case.path_parameters.update({name: real[name] for name in case.path_parameters if name in real})
        if "task_id" not in case.path_parameters and "id" in case.path_parameters:
            case.path_parameters["id"] = str(run.task_id)  # tasks/{id}/
    case.call_and_validate(headers=target["headers"], checks=CHECKS, excluded_checks=[])


@pytest.mark.django_db
def test_stateful_sequences(target):
    """Sequences along the links schemathesis infers between operations (a created task's id
    feeding its runs, a run's id feeding its actions), aimed at the member's real project."""
    run = target["run"]
    created_tasks: list[str] = []

    class Workflow(schema.as_state_machine()):
        # Each sequence starts from the same database (a savepoint rolled back at its end), so
        # replaying a sequence generates the same data, as Hypothesis requires.
        def __init__(self):
            super().__init__()
            self.savepoint = transaction.atomic()
            self.savepoint.__enter__()

        def teardown(self):
            transaction.set_rollback(True)
            self.savepoint.__exit__(None, None, None)
            super().teardown()

        def before_call(self, case):
            if "project_id" in (case.path_parameters or {}):
                case.path_parameters["project_id"] = run.project_id

        def get_call_kwargs(self, case):
            return {"headers": target["headers"]}

        def after_call(self, response, case):
            super().after_call(response, case)
            if case.method == "POST" and case.path.endswith("/tasks/") and response.status_code == 201:
                created_tasks.append(response.json()["id"])

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS, excluded_checks=[])

    run_state_machine_as_test(
        Workflow,
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        ),
    )
    assert created_tasks, "no sequence created a task through the API"
