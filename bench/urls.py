from django.urls import path

from config.urls import urlpatterns as app_urlpatterns

from . import baselines

# The app's routes first, as in a deployment without these baselines: Django tries patterns in
# order, and the baselines' six would otherwise be tried (and fail) before every app request.
urlpatterns = [
    *app_urlpatterns,
    path("bench/posthog/runs/<uuid:run_id>/", baselines.PostHogStyleRunView.as_view()),
    path("bench/posthog/tasks/<uuid:task_id>/runs/", baselines.PostHogStyleRunList.as_view()),
    path("bench/naive/runs/<uuid:run_id>/", baselines.NaiveRunView.as_view()),
    path("bench/floor/runs/<uuid:run_id>/", baselines.floor_run),
    path("bench/drf-floor/runs/<uuid:run_id>/", baselines.DRFFloorRunView.as_view()),
    path("bench/floor-key-in-update/runs/<uuid:run_id>/", baselines.floor_patch_key_in_statement),
    path("bench/floor/tasks/<uuid:task_id>/runs/", baselines.floor_run_list),
    path("bench/floor/runs/<uuid:run_id>/heartbeat/", baselines.floor_heartbeat),
]
