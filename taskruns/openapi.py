"""How the app describes itself to drf-spectacular.

Operation ids follow PostHog's generated clients (``tasks_runs_partial_update``), whatever path
the host mounts the app under, and every operation is tagged ``tasks``.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

#: Enum component names that reproduce PostHog's schema. A host merges these into
#: SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]; each value is a dotted path to choices.
ENUM_NAME_OVERRIDES = {
    "TaskRunUpdateStatusEnum": "taskruns.models.TaskRunStatus",
    "TaskRunUpdateEnvironmentEnum": "taskruns.openapi.UPDATE_ENVIRONMENT_CHOICES",
    "TaskRunEnvironmentEnum": "taskruns.models.TaskRunEnvironment",
    "TaskRunCreateStatusEnum": "taskruns.openapi.CREATE_STATUS_CHOICES",
}
UPDATE_ENVIRONMENT_CHOICES = [("local", "local")]
CREATE_STATUS_CHOICES = [("not_started", "not_started"), ("queued", "queued")]


class TaskRunsAutoSchema(AutoSchema):
    """Names operations after the path below ``projects/{project_id}/``."""

    def get_operation_id(self) -> str:
        tokens = [
            part.replace("-", "_") for part in self.path.strip("/").split("/") if part and "{" not in part
        ]
        if "projects" in tokens:
            tokens = tokens[tokens.index("projects") + 1 :]
        if self.method == "GET" and self._is_list_view():
            action = "list"
        else:
            action = self.method_mapping[self.method.lower()]
        return "_".join([*tokens, action])

    def get_tags(self) -> list[str]:
        return ["tasks"]


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "taskruns.authentication.ApiKeyAuthentication"
    name = "BearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A taskruns API key: `Authorization: Bearer trk_…`",
        }
