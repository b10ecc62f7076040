"""The API root: the projects the caller can see, each with the addresses of its lists. Login in
the browsable API lands here, and a client starts here to find its project ids."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins

from ..access import visible_projects
from ..serializers import ProjectSerializer
from .base import ProjectScopedViewSet


class ProjectViewSet(mixins.ListModelMixin, ProjectScopedViewSet):
    """The projects this caller may see (by the access policy, narrowed by a key's projects)."""

    serializer_class = ProjectSerializer

    def get_queryset(self) -> Any:
        return visible_projects(self.request).order_by("id")

    def check_reachable(self) -> None:
        pass  # the list itself is scoped; there is no parent resource to hide

    @extend_schema(operation_id="projects_list")
    def list(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        """The projects this caller can see, oldest first, with the addresses of each one's tasks
        and runs. Paged like every list (`limit`, `offset`)."""
        return super().list(request, *args, **kwargs)
