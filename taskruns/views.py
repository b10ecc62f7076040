"""Thin viewsets: they pick the queryset, the serializer and the permission, then hand the
change to taskruns.updates."""

from __future__ import annotations

import uuid

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from . import updates
from .access import visible_projects
from .exceptions import TaskRunsError
from .models import Project, Task, TaskRun
from .openapi import TaskRunsAutoSchema
from .serializers import TaskRunCreateSerializer, TaskRunSerializer, TaskRunUpdateSerializer, TaskSerializer

MAX_BIGINT = 2**63 - 1


class TaskRunsPagination(LimitOffsetPagination):
    """Limit/offset pages of 50 by default and 100 at most, as PostHog's clients expect."""

    default_limit = 50
    max_limit = 100


class ProjectScopedViewSet(viewsets.GenericViewSet):
    """Base of the app's viewsets: scoping to the URL's project, pagination, error extras."""

    permission_classes = [IsAuthenticated]
    pagination_class = TaskRunsPagination
    schema = TaskRunsAutoSchema()

    @property
    def project_id(self) -> int:
        project_id = int(self.kwargs["project_id"])
        if project_id > MAX_BIGINT:  # no such row, and too big for the database to compare
            raise NotFound()
        return project_id

    def get_project(self) -> Project:
        """The URL's project, or 404 when this request may not see it."""
        return get_object_or_404(visible_projects(self.request), pk=self.project_id)

    def visible_tasks(self):
        """Live tasks of the URL's project, if this request may see that project."""
        return Task.objects.alive().filter(
            project_id=self.project_id, project__in=visible_projects(self.request)
        )

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        # Whatever shape the host's exception handler gives errors, a conflict also tells the
        # client the run's current status (and allowed targets) so it can recover.
        if isinstance(exc, TaskRunsError) and isinstance(response.data, dict):
            response.data.update(exc.extra)
        return response


def parse_uuid(value: str) -> uuid.UUID:
    """A UUID from the URL; anything malformed is a 404, like an unknown id."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound() from None


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

    def get_queryset(self):
        return self.visible_tasks().order_by("-created_at", "-id")

    def get_object(self):
        parse_uuid(self.kwargs["pk"])
        return super().get_object()

    def list(self, request, *args, **kwargs):
        self.get_project()  # an unknown or hidden project is a 404, not an empty list
        return super().list(request, *args, **kwargs)

    def perform_create(self, serializer):
        serializer.save(project=self.get_project(), created_by=self.request.user)

    def perform_destroy(self, instance):
        Task.objects.filter(pk=instance.pk).update(deleted_at=timezone.now())


@extend_schema(responses=TaskRunSerializer)
class TaskRunViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    ProjectScopedViewSet,
):
    """Runs of a task. Runs are records: no PUT, no DELETE."""

    queryset = TaskRun.objects.none()
    serializer_class = TaskRunSerializer

    def get_serializer_class(self):
        if self.action == "partial_update":
            return TaskRunUpdateSerializer
        if self.action == "create":
            return TaskRunCreateSerializer
        return TaskRunSerializer

    def get_task(self) -> Task:
        return get_object_or_404(self.visible_tasks(), pk=parse_uuid(self.kwargs["task_id"]))

    def get_queryset(self):
        return TaskRun.objects.filter(
            task_id=parse_uuid(self.kwargs["task_id"]),
            task__deleted_at__isnull=True,
            project_id=self.project_id,
            project__in=visible_projects(self.request),
        ).order_by("-created_at", "-id")

    def get_object(self):
        parse_uuid(self.kwargs["pk"])
        return super().get_object()

    def list(self, request, *args, **kwargs):
        self.get_task()  # an unknown task is a 404, not an empty list
        return super().list(request, *args, **kwargs)

    @extend_schema(request=TaskRunCreateSerializer, responses={201: TaskRunSerializer})
    def create(self, request, *args, **kwargs):
        task = self.get_task()
        serializer = TaskRunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = updates.create_run(task, **serializer.validated_data)
        return self._run_response(run, status=201)

    @extend_schema(request=TaskRunUpdateSerializer, responses=TaskRunSerializer)
    def partial_update(self, request, *args, **kwargs):
        run = self.get_object()
        serializer = TaskRunUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._run_response(updates.update_run(run.pk, serializer.validated_data))

    @extend_schema(request=None, responses=TaskRunSerializer)
    @action(detail=True, methods=["post"], serializer_class=None)
    def resume_in_cloud(self, request, *args, **kwargs):
        """Move the run into cloud as `queued` and start its cloud worker."""
        run = self.get_object()
        return self._run_response(updates.resume_in_cloud(run.pk))

    def _run_response(self, run: TaskRun, status: int = 200) -> Response:
        return Response(TaskRunSerializer(run, context=self.get_serializer_context()).data, status=status)
