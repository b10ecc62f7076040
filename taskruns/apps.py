from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TaskRunsConfig(AppConfig):
    name = "taskruns"
    verbose_name = _("Task runs")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks and the drf-spectacular extensions.
        from . import checks, openapi  # noqa: F401
