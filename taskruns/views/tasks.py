"""Tasks of a project."""

from __future__ import annotations

from typing import Any

from django.db.models import F
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins
from rest_framework.request import Request
from rest_framework.response import Response

from .. import rows
from ..models import Task, TaskRun
from ..serializers import (
    TaskSerializer,
)
from ..waits import write_transaction
from .base import (
    PROJECT_ID,
    ProjectScopedViewSet,
    parse_uuid,
    path_ids,
)


@extend_schema(parameters=path_ids(PROJECT_ID, ("id", OpenApiTypes.UUID, "The task's id.")))
class TaskViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    ProjectScopedViewSet,
):
    """Tasks of a project. DELETE soft-deletes: the task disappears, its runs are kept."""

    queryset = Task.objects.none()  # the real one depends on the request; this types the schema
    serializer_class = TaskSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> Any:
        return self.visible_tasks().order_by("-created_at", "-id")

    def get_object(self) -> Any:
        parse_uuid(self.kwargs["pk"])
        return super().get_object()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.get_project()  # an unknown or hidden project is a 404, not an empty list
        return super().list(request, *args, **kwargs)

    def offered_form(self, method: str, instance: Task | None) -> dict[str, Any] | None:
        """The browsable API's form (taskruns.browsable): a task's writable fields, with a
        title to edit on creation (a blank one is refused)."""
        if method == "POST":
            return {"title": "New task", "description": "", "repository": "", "json_schema": None}
        if method == "PATCH" and isinstance(instance, Task):
            fields = TaskSerializer().fields
            return {name: getattr(instance, name) for name, field in fields.items() if not field.read_only}
        return None

    def perform_create(self, serializer: Any) -> Any:
        serializer.save(project=self.get_project(), created_by=self.request.user)

    def perform_destroy(self, instance: Any) -> Any:
        # The task's runs are written too (their versions move), so that the change feed shows
        # each once more, as deleted (taskruns.feed).
        now = timezone.now()
        with write_transaction(rows.database_of(TaskRun)):
            Task.objects.filter(pk=instance.pk).update(deleted_at=now)
            TaskRun.objects.filter(task_id=instance.pk).update(version=F("version") + 1, updated_at=now)
