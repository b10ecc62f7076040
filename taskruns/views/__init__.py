"""The app's views: thin viewsets that pick the queryset, the serializer and the permission,
then hand the change to taskruns.updates. One module per room: ``base`` (what they share),
``projects`` (the API root), ``tasks``, ``runs`` (a run and its actions), ``lists`` (run lists
and the change feed)."""

from .base import ProjectScopedViewSet, TaskRunsPagination
from .lists import ProjectRunViewSet, RunListViewSet
from .projects import ProjectViewSet
from .runs import TaskRunViewSet
from .tasks import TaskViewSet

__all__ = [
    "ProjectRunViewSet",
    "ProjectScopedViewSet",
    "ProjectViewSet",
    "RunListViewSet",
    "TaskRunViewSet",
    "TaskRunsPagination",
    "TaskViewSet",
]
