"""What a host merges into its ``SPECTACULAR_SETTINGS``; safe to import from a settings module
(it imports nothing, unlike taskruns.openapi, which needs configured settings).

    from taskruns.spectacular_settings import ENUM_NAME_OVERRIDES
    SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {}).update(ENUM_NAME_OVERRIDES)
"""

#: Enum component names that reproduce PostHog's schema (``TaskRunUpdateStatusEnum``, …) and
#: keep the app's enums apart from a host's enums of the same field names. drf-spectacular
#: names enums once for the whole schema, so only the host's settings can say this.
ENUM_NAME_OVERRIDES = {
    "TaskRunUpdateStatusEnum": "taskruns.models.TaskRunStatus",
    "TaskRunUpdateEnvironmentEnum": "taskruns.openapi.UPDATE_ENVIRONMENT_CHOICES",
    "TaskRunEnvironmentEnum": "taskruns.models.TaskRunEnvironment",
    "TaskRunCreateStatusEnum": "taskruns.openapi.CREATE_STATUS_CHOICES",
    "TaskRunEventKindEnum": "taskruns.models.TaskRunEventKind",
}
