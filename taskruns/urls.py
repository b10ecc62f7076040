"""The app's routes. Mount them with ``path("api/", include("taskruns.urls"))``."""

from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from .views import ProjectRunViewSet, ProjectViewSet, TaskRunViewSet, TaskViewSet

app_name = "taskruns"

router = SimpleRouter()
# Runs first: Django tries the patterns in order, and an agent's calls are nearly all to a run.
router.register(
    r"projects/(?P<project_id>[^/]+)/tasks/(?P<task_id>[^/]+)/runs", TaskRunViewSet, basename="run"
)
router.register(r"projects/(?P<project_id>[^/]+)/tasks", TaskViewSet, basename="task")
router.register(r"projects/(?P<project_id>[^/]+)/runs", ProjectRunViewSet, basename="project-run")
router.register(r"projects", ProjectViewSet, basename="project")

urlpatterns = [
    # The agent client reads `…/logs` without a trailing slash: answer it directly, no redirect.
    # (Left out of the schema, where `…/logs/` already describes the operation.)
    re_path(
        r"^projects/(?P<project_id>[^/]+)/tasks/(?P<task_id>[^/]+)/runs/(?P<pk>[^/]+)/logs$",
        TaskRunViewSet.as_view({"get": "logs"}, schema=None),
    ),
    *router.urls,
    # The API root (where the browsable API's login lands): the same list as `projects/`.
    path("", ProjectViewSet.as_view({"get": "list"}, schema=None), name="root"),
]
