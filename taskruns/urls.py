"""The app's routes. Mount them with ``path("api/", include("taskruns.urls"))``.

Every route answers with or without its trailing slash. The slashed form is the one URLs are
reversed to and the schema documents; the other is the same view, unnamed and left out of the
schema, so a client that drops the slash (a PATCH cannot follow a redirect) is served directly,
with no redirect and no dependence on the host's APPEND_SLASH.
"""

from collections.abc import Iterable
from typing import Any

from django.urls import URLPattern, path, re_path
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


def without_trailing_slash(patterns: Iterable[Any]) -> list[URLPattern]:
    """Each slashed route again without its slash: the same view, unnamed (reverse() keeps giving
    the slashed URL), behind a plain function that the schema generator does not list."""
    unslashed = []
    for pattern in patterns:
        regex = pattern.pattern.regex.pattern
        if regex.endswith("/$"):
            unslashed.append(re_path(regex[:-2] + "$", _unlisted(pattern.callback)))
    return unslashed


def _unlisted(view: Any) -> Any:
    def unlisted_view(request: Any, *args: Any, **kwargs: Any) -> Any:
        return view(request, *args, **kwargs)

    unlisted_view.csrf_exempt = True  # type: ignore[attr-defined]  # as DRF's views are
    return unlisted_view


urlpatterns = [
    *router.urls,
    *without_trailing_slash(router.urls),
    # The API root (where the browsable API's login lands): the same list as `projects/`.
    path("", ProjectViewSet.as_view({"get": "list"}, schema=None), name="root"),
]
