"""The app's routes. Mount them with ``path("api/", include("taskruns.urls"))``."""

from rest_framework.routers import SimpleRouter

from .views import TaskRunViewSet, TaskViewSet

app_name = "taskruns"

router = SimpleRouter()
router.register(r"projects/(?P<project_id>[0-9]+)/tasks", TaskViewSet, basename="task")
router.register(
    r"projects/(?P<project_id>[0-9]+)/tasks/(?P<task_id>[^/.]+)/runs", TaskRunViewSet, basename="run"
)

urlpatterns = router.urls
