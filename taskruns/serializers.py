"""Request and response shapes. Serializers check shapes; taskruns.updates applies the rules."""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.drainage import set_override
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.fields import empty

from . import jsonschemas, rules
from .conf import app_settings
from .models import Project, Task, TaskRun, TaskRunEnvironment, TaskRunEvent, TaskRunStatus
from .renderers import TaskRunsJSONRenderer
from .storedjson import as_stored


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of quietly turning them into text."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def _check_column_length(value: str | None, field_name: str) -> str | None:
    # Checked here rather than with max_length= so that the OpenAPI component stays exactly
    # PostHog's (which declares no maxLength), while over-long values still get a 400.
    limit = getattr(TaskRun._meta.get_field(field_name), "max_length", None)
    if value is not None and limit is not None and len(value) > limit:
        raise serializers.ValidationError(
            _("Ensure this field has no more than {limit} characters.").format(limit=limit), code="max_length"
        )
    return value


# Builds, for a serializer given a body, only the declared fields that the body names, each a
# shallow copy. DRF deep-copies and binds every declared field for each serializer instance and
# then skips the absent ones one exception at a time: on a PATCH naming one or two fields that
# was most of the cost of validating it. Leaving absent fields out changes nothing only when an
# absent field has no effect, so every field of a serializer using this must be optional and
# without a default (checked when the class is made). Without a body (schema generation, the
# browsable API's form) every field is built. A shallow copy is enough because binding writes
# only the copy's own attributes and these fields keep no other per-request state; the nested
# child of a ListField is shared, so only fields whose children do not read the serializer's
# context belong here. (A comment, not a docstring: drf-spectacular would publish it as the
# description of every component that inherits it.)
class NamedFieldsOnly:
    _declared_fields: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, field in cls._declared_fields.items():
            if field.required or field.default is not empty:
                raise TypeError(
                    f"{cls.__name__}.{name}: NamedFieldsOnly needs optional fields without defaults"
                )

    def get_fields(self) -> Any:
        declared = self._declared_fields
        body = getattr(self, "initial_data", None)
        names = [name for name in declared if name in body] if isinstance(body, Mapping) else declared
        return {name: copy.copy(declared[name]) for name in names}


# The PATCH body of a run: PostHog's ``PatchedTaskRunUpdate``, field for field. (A comment, not
# a docstring: drf-spectacular would publish a docstring as the component's description, and
# the component must equal PostHog's.)
# The checks of the run fields a PATCH and a run's creation both take. (A comment, not a
# docstring: drf-spectacular would take a docstring as PatchedTaskRunUpdate's description.)
class RunFieldChecks:
    def validate_branch(self, value: Any) -> Any:
        return _check_column_length(value, "branch")

    def validate_stage(self, value: Any) -> Any:
        return _check_column_length(value, "stage")

    def validate_state(self, value: Any) -> Any:
        return _check_state_object(value)


class TaskRunUpdateSerializer(RunFieldChecks, NamedFieldsOnly, serializers.Serializer[Any]):
    status = serializers.ChoiceField(
        choices=TaskRunStatus.choices, required=False, help_text="Current execution status"
    )
    branch = StrictCharField(
        required=False,
        allow_null=True,
        trim_whitespace=False,
        help_text="Git branch name to associate with the task",
    )
    stage = StrictCharField(
        required=False,
        allow_null=True,
        trim_whitespace=False,
        help_text="Current stage of the run (e.g. research, plan, build)",
    )
    output = serializers.JSONField(required=False, allow_null=True, help_text="Output from the run")
    state = serializers.JSONField(required=False, help_text="State of the run")
    state_remove_keys = serializers.ListField(
        child=StrictCharField(allow_blank=True, trim_whitespace=False),
        required=False,
        help_text="State keys to remove atomically before applying any state updates.",
    )
    # PostHog's newer field: {state key: item to append}, after removal and merge. Left out of
    # the PatchedTaskRunUpdate component, which stays the reference's eight properties
    # (taskruns.openapi.PatchedTaskRunUpdateSchema); the PATCH operation describes it.
    state_append = serializers.JSONField(required=False)
    error_message = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Error message if execution failed",
    )
    environment = serializers.ChoiceField(
        choices=[(TaskRunEnvironment.LOCAL.value, TaskRunEnvironment.LOCAL.label)],
        required=False,
        help_text=(
            "Transition a cloud run to local. Use the resume_in_cloud action to move a run into cloud."
        ),
        error_messages={
            "invalid_choice": _(
                '"{input}" is not a valid choice. A PATCH can only move a run to local; '
                "use the resume_in_cloud action to move a run into cloud."
            )
        },
    )

    def validate_state_append(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError(
                _("state_append must be a JSON object of state keys and the items to append."),
                code="not_an_object",
            )
        return value

    def validate_state_remove_keys(self, value: Any) -> Any:
        if not value:
            raise serializers.ValidationError(
                _("List the keys to remove, or leave the field out."), code="empty"
            )
        return value

    def validate(self, attrs: Any) -> Any:
        check_state_names(attrs, ("state", "state_remove_keys", "state_append"))
        return attrs


def check_state_names(attrs: Mapping[str, Any], fields: tuple[str, ...]) -> None:
    """The rules on the state keys a write names (in ``fields`` of ``attrs``): at most
    MAX_STATE_KEYS_PER_PATCH of them (400 ``too_many_keys``), none of PROTECTED_STATE_KEYS (400
    ``protected_key``, per field). A PATCH and a run's creation both follow them."""
    named_keys = sum(len(attrs.get(name, ())) for name in fields)
    if named_keys > app_settings.MAX_STATE_KEYS_PER_PATCH:
        raise serializers.ValidationError(
            _("At most {most} state keys may be set, removed and appended to in one write.").format(
                most=app_settings.MAX_STATE_KEYS_PER_PATCH
            ),
            code="too_many_keys",
        )
    protected = set(app_settings.PROTECTED_STATE_KEYS)
    errors = {}
    for field in fields:
        named = sorted(protected.intersection(attrs.get(field, ())))
        if named:
            errors[field] = [
                serializers.ErrorDetail(
                    _("These state keys are protected and can only be changed by the server: {keys}.").format(
                        keys=", ".join(named)
                    ),
                    code="protected_key",
                )
            ]
    if errors:
        raise serializers.ValidationError(errors)


def _check_state_object(value: Any) -> Any:
    if not isinstance(value, dict):
        raise serializers.ValidationError(_("State must be a JSON object."), code="not_an_object")
    return value


@functools.lru_cache(maxsize=16)
def _datetime_field(zone: Any) -> serializers.DateTimeField:
    """DRF's DateTimeField fixed to ``zone``, made once per zone."""
    return serializers.DateTimeField(read_only=True, default_timezone=zone)


def _timestamps() -> Any:
    """A writer of a response's timestamps, as DRF writes them: the current time zone is looked
    up once per response instead of once per timestamp."""
    return _datetime_field(timezone.get_current_timezone() if settings.USE_TZ else None).to_representation


@extend_schema_field({"type": "integer", "nullable": True, "minimum": 1})
class SecondsField(serializers.Field):  # type: ignore[type-arg]
    """A duration as a whole number of seconds (``heartbeat_timeout``)."""

    def to_representation(self, value: timedelta) -> int:
        return int(value.total_seconds())


@extend_schema_field({"type": "object", "additionalProperties": {}})
class StateField(serializers.JSONField):
    """A run's state as answered: always a JSON object (the model's JSONField says only "JSON")."""


class TaskRunSerializer(serializers.ModelSerializer[Any]):
    """A run as every run endpoint returns it."""

    state = StateField(read_only=True, help_text="The run's state: a JSON object, never null.")
    output = serializers.JSONField(
        read_only=True, allow_null=True, help_text="The run's output: any JSON value, or null."
    )
    log_url = serializers.SerializerMethodField(help_text="Absolute URL of the run's log, once it has one.")
    heartbeat_timeout = SecondsField(
        read_only=True,
        help_text="Seconds the run may stay in progress without a heartbeat before the server fails "
        "it (error_code heartbeat_timeout); null: never.",
    )

    class Meta:
        model = TaskRun
        fields = [
            "id",
            "task",
            "project",
            "status",
            "environment",
            "stage",
            "branch",
            "error_message",
            "output",
            "state",
            "log_url",
            "version",
            "created_at",
            "updated_at",
            "started_at",
            "completed_at",
            "status_changed_at",
            "last_heartbeat_at",
            "cancel_requested_at",
            "heartbeat_timeout",
            "error_code",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "status_changed_at": {"help_text": "When the run entered its current status."},
            "last_heartbeat_at": {"help_text": "When its executor last sent a heartbeat."},
            "cancel_requested_at": {
                "help_text": "When a cancel was requested; while set on an in-progress run, its "
                "executor should stop and end the run."
            },
            "error_code": {
                "help_text": "Why the server itself ended the run (heartbeat_timeout, queued_timeout), "
                "else null."
            },
        }

    def to_representation(self, run: TaskRun) -> dict[str, Any]:
        # Every run response goes through here, so it is written out rather than walked field
        # by field (several times faster); tests/test_serializers.py pins it to DRF's own
        # field-by-field output of the declared fields, which the schema is generated from.
        json_value = as_stored if self._renders_stored_json() else getattr
        timestamp = _timestamps()
        return {
            "id": str(run.id),
            "task": str(run.task_id),
            "project": run.project_id,
            "status": run.status,
            "environment": run.environment,
            "stage": run.stage,
            "branch": run.branch,
            "error_message": run.error_message,
            "output": json_value(run, "output"),
            "state": json_value(run, "state"),
            "log_url": self.get_log_url(run),
            "version": run.version,
            "created_at": timestamp(run.created_at),
            "updated_at": timestamp(run.updated_at),
            "started_at": timestamp(run.started_at),
            "completed_at": timestamp(run.completed_at),
            "status_changed_at": timestamp(run.status_changed_at),
            "last_heartbeat_at": timestamp(run.last_heartbeat_at),
            "cancel_requested_at": timestamp(run.cancel_requested_at),
            "heartbeat_timeout": (
                None if run.heartbeat_timeout is None else int(run.heartbeat_timeout.total_seconds())
            ),
            "error_code": run.error_code,
        }

    def _renders_stored_json(self) -> bool:
        """Whether the response's renderer writes StoredJSON values as they are."""
        renderer = getattr(self.context.get("request"), "accepted_renderer", None)
        return isinstance(renderer, TaskRunsJSONRenderer)

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_log_url(self, run: TaskRun) -> str | None:
        request = self.context.get("request")
        if not run.has_log or request is None:
            return None
        kwargs = {"project_id": run.project_id, "task_id": run.task_id, "pk": run.pk}
        return str(request.build_absolute_uri(reverse("taskruns:run-logs", kwargs=kwargs)))


#: The longest heartbeat timeout a run may ask for: a week.
MAX_HEARTBEAT_TIMEOUT = 7 * 24 * 3600


class TaskRunCreateSerializer(RunFieldChecks, serializers.Serializer[Any]):
    """The body of POST runs/: where the run starts and in which status."""

    environment = serializers.ChoiceField(
        choices=TaskRunEnvironment.choices,
        default=TaskRunEnvironment.LOCAL,
        help_text="Where the run executes.",
    )
    status = serializers.ChoiceField(
        choices=[(s.value, s.label) for s in (TaskRunStatus.NOT_STARTED, TaskRunStatus.QUEUED)],
        default=TaskRunStatus.QUEUED,
        help_text="Initial status of the run.",
    )
    heartbeat_timeout = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_HEARTBEAT_TIMEOUT,
        help_text="Seconds the run may stay in progress without a heartbeat before the server fails it; "
        "null: never. Left out: the server's default (TASKRUNS['HEARTBEAT_TIMEOUT']).",
    )
    branch = StrictCharField(
        required=False, allow_null=True, trim_whitespace=False, help_text="Git branch name of the run."
    )
    stage = StrictCharField(
        required=False, allow_null=True, trim_whitespace=False, help_text="Stage the run starts in."
    )
    state = serializers.JSONField(
        required=False,
        help_text="The run's initial state, a JSON object; the rules of a PATCH's `state` apply "
        "(protected keys, key count, size).",
    )

    def validate(self, attrs: Any) -> Any:
        check_state_names(attrs, ("state",))
        return attrs


class CancelSerializer(serializers.Serializer[Any]):
    """The body of cancel: why, for the run's history (optional)."""

    reason = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=TaskRunEvent._meta.get_field("note").max_length,
        help_text="Why the run is cancelled; kept in the run's history.",
    )


class HeartbeatSerializer(serializers.Serializer[Any]):
    """The answer to a heartbeat: keep going, or stop when `cancel_requested`."""

    status = serializers.ChoiceField(choices=TaskRunStatus.choices, help_text="The run's status.")
    version = serializers.IntegerField(help_text="The run's version (a heartbeat does not change it).")
    cancel_requested = serializers.BooleanField(
        help_text="A cancel was requested: stop, then end the run with a terminal status."
    )


@extend_schema_serializer(component_name="TaskRunsProject")
class ProjectSerializer(serializers.ModelSerializer[Any]):
    """A project the caller can see, with the addresses of its lists."""

    tasks_url = serializers.SerializerMethodField(help_text="The project's tasks.")
    runs_url = serializers.SerializerMethodField(help_text="Every run of the project, across its tasks.")

    class Meta:
        model = Project
        fields = ["id", "name", "created_at", "tasks_url", "runs_url"]
        read_only_fields = fields

    def get_tasks_url(self, project: Project) -> str:
        return self._absolute(reverse("taskruns:task-list", kwargs={"project_id": project.pk}))

    def get_runs_url(self, project: Project) -> str:
        return self._absolute(reverse("taskruns:project-run-list", kwargs={"project_id": project.pk}))

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


# Named apart from "Task": a host's own serializer of that name is common, and two components
# of one name make drf-spectacular warn (and --fail-on-warn fail).
@extend_schema_serializer(component_name="TaskRunsTask")
class TaskSerializer(serializers.ModelSerializer[Any]):
    """A task, as listed, created and edited."""

    json_schema = serializers.JSONField(
        required=False, allow_null=True, help_text="JSON Schema that a run's output must match."
    )

    class Meta:
        model = Task
        fields = [
            "id",
            "project",
            "title",
            "description",
            "repository",
            "json_schema",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "project", "created_by", "created_at", "updated_at"]

    def validate_json_schema(self, value: Any) -> Any:
        try:
            jsonschemas.check_schema(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages[0], code=exc.code) from None
        return value


class SetOutputSerializer(serializers.Serializer[Any]):
    """The body of set_output: the run's new output, checked against the task's JSON Schema."""

    output = serializers.JSONField(help_text="The run's new output; replaces the stored one.")

    def validate_output(self, value: Any) -> Any:
        schema = self.context["task"].json_schema
        if schema is None:
            return value
        try:
            mismatch = jsonschemas.output_mismatch(schema, value)
        except DjangoValidationError as exc:
            # A schema stored before it was checked on write: refused now, never fetched from.
            raise serializers.ValidationError(exc.messages[0], code=exc.code) from None
        if mismatch is not None:
            raise serializers.ValidationError(mismatch, code="output_schema_mismatch")
        return value


class AppendLogSerializer(serializers.Serializer[Any]):
    """The body of append_log: entries (JSON objects) appended in order."""

    entries = serializers.ListField(
        child=serializers.DictField(), help_text="Log entries, each a JSON object, oldest first."
    )

    def validate_entries(self, entries: Any) -> Any:
        if not entries:
            raise serializers.ValidationError(_("Send at least one entry."), code="empty")
        most = app_settings.LOG_MAX_ENTRIES_PER_CALL
        if len(entries) > most:
            raise serializers.ValidationError(
                _("At most {most} entries per call.").format(most=most), code="too_many_entries"
            )
        largest = app_settings.LOG_MAX_ENTRY_BYTES
        for index, entry in enumerate(entries):
            if rules.log_entry_size(entry) > largest:
                raise serializers.ValidationError(
                    _("Entry {index} is larger than {largest} bytes.").format(index=index, largest=largest),
                    code="entry_too_large",
                )
        return entries


class TaskRunEventSerializer(serializers.ModelSerializer[Any]):
    """One entry of a run's history."""

    user = serializers.SerializerMethodField(help_text="Username of who made the change, if a user did.")
    api_key: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        source="actor_api_key",
        slug_field="prefix",
        read_only=True,
        allow_null=True,
        help_text="Public prefix of the API key used, if one was.",
    )

    class Meta:
        model = TaskRunEvent
        fields = [
            "id",
            "kind",
            "from_value",
            "to_value",
            "state_keys_set",
            "state_keys_removed",
            "user",
            "api_key",
            "via",
            "note",
            "created_at",
        ]
        read_only_fields = fields

    def get_user(self, event: TaskRunEvent) -> str | None:
        return event.actor_user.get_username() if event.actor_user else None


class TaskRunTombstoneSerializer(serializers.Serializer[Any]):
    """A run of a deleted task, as the change feed shows it once: drop it from a mirror."""

    id = serializers.UUIDField(help_text="The run's id.")
    deleted = serializers.BooleanField(help_text="Always true.")


def _page_links() -> dict[str, serializers.Field[Any, Any, Any, Any]]:
    return {
        "next": serializers.URLField(allow_null=True, help_text="The next page, or null."),
        "previous": serializers.URLField(allow_null=True, help_text="The previous page, or null."),
    }


@extend_schema_serializer(component_name="PaginatedTaskRunList")
class TaskRunPageSerializer(serializers.Serializer[Any]):
    """A limit/offset page of runs (the default)."""

    count = serializers.IntegerField(help_text="How many runs match (at most TASKRUNS['LIST_COUNT_LIMIT']).")
    next = _page_links()["next"]
    previous = _page_links()["previous"]
    results = TaskRunSerializer(many=True)


class TaskRunCursorPageSerializer(serializers.Serializer[Any]):
    """A cursor page of runs (`?cursor=`)."""

    next = _page_links()["next"]
    previous = _page_links()["previous"]
    results = TaskRunSerializer(many=True)


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="TaskRunChange",
        serializers=[TaskRunSerializer, TaskRunTombstoneSerializer],
        resource_type_field_name=None,
        many=True,
    )
)
class TaskRunChangesField(serializers.ListField):
    """The feed's runs: each a run, or a tombstone of a run of a deleted task."""


class TaskRunChangesSerializer(serializers.Serializer[Any]):
    """A page of the change feed (`?changes_after=`)."""

    results = TaskRunChangesField(help_text="The runs changed after the cursor, in change order.")
    next_cursor = serializers.CharField(help_text="Where the next request starts (changes_after).")


def run_list_answer() -> PolymorphicProxySerializer:
    """The schema of a run list's answer: a limit/offset page, a cursor page or a feed page."""
    answer = PolymorphicProxySerializer(
        component_name="TaskRunListAnswer",
        serializers=[TaskRunPageSerializer, TaskRunCursorPageSerializer, TaskRunChangesSerializer],
        resource_type_field_name=None,
    )
    set_override(answer, "many", False)  # already a page: drf-spectacular must not paginate it
    return answer
