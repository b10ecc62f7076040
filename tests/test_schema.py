"""The OpenAPI schema is a product: compared with the committed file, and the PATCH component
is PostHog's PatchedTaskRunUpdate exactly."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import yaml
from django.core.management import call_command

from .conftest import mount

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "openapi.yml"
GENERATED = ROOT / "openapi.generated.yml"

STATUS_CHOICES = (
    "\n\n* `not_started` - not_started\n* `queued` - queued\n* `in_progress` - in_progress"
    "\n* `completed` - completed\n* `failed` - failed\n* `cancelled` - cancelled"
)
EXPECTED_PATCH_COMPONENT = {
    "type": "object",
    "properties": {
        "status": {
            "allOf": [{"$ref": "#/components/schemas/TaskRunUpdateStatusEnum"}],
            "description": "Current execution status" + STATUS_CHOICES,
        },
        "branch": {
            "type": "string",
            "nullable": True,
            "description": "Git branch name to associate with the task",
        },
        "stage": {
            "type": "string",
            "nullable": True,
            "description": "Current stage of the run (e.g. research, plan, build)",
        },
        "output": {"nullable": True, "description": "Output from the run"},
        "state": {"description": "State of the run"},
        "state_remove_keys": {
            "type": "array",
            "items": {"type": "string"},
            "description": "State keys to remove atomically before applying any state updates.",
        },
        "error_message": {
            "type": "string",
            "nullable": True,
            "description": "Error message if execution failed",
        },
        "environment": {
            "allOf": [{"$ref": "#/components/schemas/TaskRunUpdateEnvironmentEnum"}],
            "description": "Transition a cloud run to local. "
            "Use the resume_in_cloud action to move a run into cloud.\n\n* `local` - local",
        },
    },
}


def generate(tmp_path) -> str:
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    return out.read_text()


def test_committed_schema_is_up_to_date(tmp_path):
    generated = generate(tmp_path)
    committed = COMMITTED.read_text()
    if generated != committed:
        GENERATED.write_text(generated)
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(True), generated.splitlines(True), "openapi.yml", "generated", n=2
            )
        )
        raise AssertionError(f"openapi.yml is stale; the new schema is in {GENERATED.name}:\n{diff}")


def test_patch_component_is_posthogs(tmp_path):
    components = yaml.safe_load(generate(tmp_path))["components"]["schemas"]
    assert components["PatchedTaskRunUpdate"] == EXPECTED_PATCH_COMPONENT
    assert components["TaskRunUpdateStatusEnum"]["enum"] == [
        "not_started",
        "queued",
        "in_progress",
        "completed",
        "failed",
        "cancelled",
    ]
    assert components["TaskRunUpdateEnvironmentEnum"]["enum"] == ["local"]


def test_operation_ids_follow_posthogs_clients(tmp_path):
    paths = yaml.safe_load(generate(tmp_path))["paths"]
    ids = {op["operationId"] for methods in paths.values() for op in methods.values()}
    assert {
        "tasks_list",
        "tasks_create",
        "tasks_runs_list",
        "tasks_runs_create",
        "tasks_runs_retrieve",
        "tasks_runs_partial_update",
        "tasks_runs_resume_in_cloud_create",
    } <= ids
    assert all(op["tags"] == ["tasks"] for methods in paths.values() for op in methods.values())


def test_schema_and_docs_are_served_without_a_cdn(client):
    assert client.get("/api/schema/").status_code == 200
    for page in ("/api/docs/", "/api/redoc/"):
        html = client.get(page).content.decode()
        # Every script and stylesheet comes from this server. (Not a search for "cdn" in the
        # page: the page's random CSRF token sometimes contains those letters.)
        assert "/static/drf_spectacular_sidecar/" in html
        assert not re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html, flags=re.IGNORECASE)
        assert "cdn.jsdelivr" not in html and "unpkg.com" not in html


def test_event_actor_fields_are_nullable(tmp_path):
    # Found by the schema fuzzer: events written by the system have no user and no key.
    event = yaml.safe_load(generate(tmp_path))["components"]["schemas"]["TaskRunEvent"]["properties"]
    assert event["user"]["nullable"] and event["api_key"]["nullable"]


def test_error_statuses_are_documented(tmp_path):
    paths = yaml.safe_load(generate(tmp_path))["paths"]
    patch = paths["/api/projects/{project_id}/tasks/{task_id}/runs/{id}/"]["patch"]["responses"]
    assert {"200", "400", "401", "404", "409", "412", "413", "415", "503"} <= set(patch)
    assert (
        "502"
        in paths["/api/projects/{project_id}/tasks/{task_id}/runs/{id}/resume_in_cloud/"]["post"]["responses"]
    )


def test_every_operation_declares_exactly_the_ids_in_its_path(tmp_path):
    """Swagger UI refuses to send a request missing a required path parameter: the task and run
    lists once declared an `id` they do not have."""
    paths = yaml.safe_load(generate(tmp_path))["paths"]
    wrong = []
    for path, operations in paths.items():
        for method, operation in operations.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            if declared != set(re.findall(r"{(\w+)}", path)):
                wrong.append((method, path, sorted(declared)))
    assert wrong == []


def test_an_independent_validator_finds_the_schema_valid(tmp_path):
    """Besides drf-spectacular's own `--validate`: openapi-spec-validator, which shares no code
    with it, checks the generated document against the OpenAPI 3.0 specification."""
    from openapi_spec_validator import validate

    validate(yaml.safe_load(generate(tmp_path)))  # raises on the first problem


def operations_of(document: dict) -> dict[str, dict]:
    return {
        operation["operationId"]: operation
        for methods in document["paths"].values()
        for operation in methods.values()
        if isinstance(operation, dict) and "operationId" in operation
    }


def test_each_operation_has_its_own_description_pointing_at_the_readme(tmp_path):
    from taskruns.apidocs import SECTIONS

    operations = operations_of(yaml.safe_load(generate(tmp_path)))
    descriptions = {name: operation.get("description", "") for name, operation in operations.items()}
    shared = [name for name, text in descriptions.items() if list(descriptions.values()).count(text) > 1]
    assert shared == []
    assert [name for name, text in descriptions.items() if "taskruns README" not in text] == []
    assert [name for name, operation in operations.items() if not operation.get("summary")] == []
    readme = (ROOT / "README.md").read_text()
    for section in SECTIONS.values():
        assert re.search(rf"^(\*\*|#+ ){re.escape(section)}", readme, re.M), section
    patch = descriptions["tasks_runs_partial_update"]
    for rule in ("state_remove_keys", "state_append", "invalid_transition", "protected_key", "If-Match"):
        assert rule in patch


def test_the_patch_description_shows_the_transition_table_in_force(tmp_path, settings):
    def queued_row() -> str:
        patch = operations_of(yaml.safe_load(generate(tmp_path)))["tasks_runs_partial_update"]
        return next(line for line in patch["description"].splitlines() if line.startswith("| queued |"))

    assert queued_row() == "| queued | ✗ | = | ✓ | ✓ | ✓ | ✓ |"
    table = {status: [] for status in ("not_started", "in_progress", "completed", "failed", "cancelled")}
    settings.TASKRUNS = {**settings.TASKRUNS, "TRANSITIONS": {**table, "queued": ["in_progress"]}}
    assert queued_row() == "| queued | ✗ | = | ✓ | ✗ | ✗ | ✗ |"


def test_errors_are_components_naming_their_codes(tmp_path):
    """Every error the app raises has its status documented, and its code in that status's
    component; the body's shape is the default handler's."""
    from taskruns.exceptions import TaskRunsError
    from taskruns.openapi_errors import ERROR_STATUSES, _app_errors

    document = yaml.safe_load(generate(tmp_path))
    components = document["components"]["schemas"]
    for error in _app_errors():
        if error is TaskRunsError:
            continue
        component = components[ERROR_STATUSES[error.status_code].component]
        codes = component["properties"]["errors"]["items"]["properties"]["code"]["enum"]
        assert error.default_code in codes, error
    conflict = operations_of(document)["tasks_runs_partial_update"]["responses"]["409"]
    assert conflict["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ConflictErrorResponse"
    }
    assert components["UnauthorizedErrorResponse"]["properties"]["errors"]["items"]["properties"]["code"][
        "enum"
    ] == [
        "authentication_failed",
        "invalid_api_key",
        "not_authenticated",
    ]


def test_a_host_handler_gets_open_error_bodies(tmp_path, settings):
    settings.TASKRUNS = {**settings.TASKRUNS, "EXCEPTION_HANDLER": "rest_framework.views.exception_handler"}
    document = yaml.safe_load(generate(tmp_path))
    assert not [name for name in document["components"]["schemas"] if name.endswith("ErrorResponse")]
    patch = operations_of(document)["tasks_runs_partial_update"]["responses"]
    assert patch["409"]["content"]["application/json"] == {
        "schema": {"type": "object", "additionalProperties": {}}
    }


def test_set_outputs_body_requires_its_output(tmp_path, api, run):
    components = yaml.safe_load(generate(tmp_path))["components"]["schemas"]
    assert components["PatchedSetOutput"]["required"] == ["output"]
    response = api.patch(
        f"{mount()}projects/{run.project_id}/tasks/{run.task_id}/runs/{run.pk}/set_output/", {}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0] == {
        "code": "required",
        "detail": "This field is required.",
        "attr": "output",
    }
