"""How the app describes itself to drf-spectacular.

Operation ids follow PostHog's generated clients (``tasks_runs_partial_update``), whatever path
the host mounts the app under, and every operation is tagged ``tasks``. Component names stay
the app's own (``PatchedTaskRunUpdate`` above all) whatever the host's component settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.settings import spectacular_settings

from .apidocs import SUMMARIES, describe
from .openapi_errors import error_response
from .openapi_examples import attach_examples

UPDATE_ENVIRONMENT_CHOICES = [("local", "local")]
CREATE_STATUS_CHOICES = [("not_started", "not_started"), ("queued", "queued")]

#: drf-spectacular settings that change how components are named and shaped, held at these
#: values while the app's operations are described: a host's ``COMPONENT_SPLIT_REQUEST`` would
#: otherwise rename ``PatchedTaskRunUpdate`` to ``PatchedTaskRunUpdateRequest``.
COMPONENT_SETTINGS = {
    "COMPONENT_SPLIT_REQUEST": False,
    "COMPONENT_SPLIT_PATCH": True,
    "COMPONENT_NO_READ_ONLY_REQUIRED": False,
    "ENFORCE_NON_BLANK_FIELDS": False,
}


@contextmanager
def app_component_settings() -> Iterator[None]:
    """COMPONENT_SETTINGS in force, the previous values (the host's, or a schema view's own
    patches) restored after."""
    previous = {name: getattr(spectacular_settings, name) for name in COMPONENT_SETTINGS}
    for name, value in COMPONENT_SETTINGS.items():
        setattr(spectacular_settings, name, value)
    try:
        yield
    finally:
        for name, value in previous.items():
            setattr(spectacular_settings, name, value)


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

    def get_filter_backends(self) -> list[Any]:
        # Only the run lists filter; their other paginated actions (events) do not.
        if getattr(self.view, "action", None) != "list":
            return []
        backends: list[Any] = super().get_filter_backends()
        return backends

    def get_tags(self) -> list[str]:
        return ["tasks"]

    def get_operation(self, path: Any, path_regex: Any, path_prefix: Any, method: Any, registry: Any) -> Any:
        with app_component_settings():
            operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is not None:
            # The viewsets declare their path ids once for all their operations (the URL
            # patterns say nothing of the ids' types); an id that is not in this operation's
            # path is not one of its parameters (Swagger UI would refuse to send without it).
            operation["parameters"] = [
                parameter
                for parameter in operation.get("parameters", [])
                if parameter["in"] != "path" or "{" + parameter["name"] + "}" in path
            ]
            if not operation["parameters"]:
                del operation["parameters"]
            for status in self._error_statuses():
                operation["responses"].setdefault(str(status), error_response(status, registry))
            description = describe(operation["operationId"])
            if description is not None:
                operation["description"] = description
            if operation["operationId"] in SUMMARIES:
                operation["summary"] = SUMMARIES[operation["operationId"]]
            attach_examples(operation)
            if (
                self.method == "GET"
                and getattr(self.view, "action", None) == "retrieve"
                and self._is_run_view()
            ):
                operation["responses"]["304"] = {
                    "description": "Not modified: If-None-Match holds the current ETag."
                }
        return operation

    def _error_statuses(self) -> list[int]:
        """The error statuses this operation can answer (design §10, README "Errors")."""
        action = getattr(self.view, "action", None)
        statuses = [401, 404, 429, 503]
        if self.method in ("POST", "PATCH", "PUT", "DELETE"):
            statuses.append(403)  # a session's missing CSRF token
        if self.method in ("POST", "PATCH", "PUT") and self.get_request_serializer() is not None:
            statuses += [400, 411, 413, 415]
        elif self.method == "GET" and (self._is_list_view() or action in ("events", "stream")):
            # A filter value it cannot take, a bad cursor, an offset too large; a stream's
            # unknown Last-Event-ID or start.
            statuses.append(400)
        if (
            action in ("partial_update", "resume_in_cloud", "set_output", "append_log", "cancel")
            and self._is_run_view()
        ):
            statuses.append(412)
        if action in ("partial_update", "resume_in_cloud", "cancel", "heartbeat") and self._is_run_view():
            statuses.append(409)
        if action == "resume_in_cloud":
            statuses.append(502)
        return sorted(statuses)

    def _is_run_view(self) -> bool:
        return "/runs/" in self.path


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "taskruns.authentication.ApiKeyAuthentication"
    name = "BearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A taskruns API key: `Authorization: Bearer trk_…`",
        }


class CursorPageSchema(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    """A cursor page has no ``count``: said in the schema, so that a run list's answer matches
    exactly one of its three shapes (``TaskRunListAnswer`` is a ``oneOf``)."""

    target_class = "taskruns.serializers.TaskRunCursorPageSerializer"

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["not"] = {"required": ["count"]}
        return schema


class PatchedTaskRunUpdateSchema(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    """PostHog's ``PatchedTaskRunUpdate`` has eight properties; the app's PATCH also takes
    ``state_append`` (PostHog's newer agents send it), which the PATCH operation's description
    documents instead, so that the component stays equal to the reference."""

    target_class = "taskruns.serializers.TaskRunUpdateSerializer"

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["properties"].pop("state_append", None)
        return schema


class SetOutputSchema(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    """``set_output`` is a PATCH, so drf-spectacular makes its body's fields optional; its
    ``output`` is required (a body without one is a 400 ``required``)."""

    target_class = "taskruns.serializers.SetOutputSerializer"

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["required"] = ["output"]
        return schema
