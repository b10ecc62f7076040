"""Projects, tasks, their runs, and the API keys that agents use to reach them."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .jsonschemas import check_schema
from .storedjson import StoredJSONField


class TaskRunStatus(models.TextChoices):
    NOT_STARTED = "not_started", "not_started"
    QUEUED = "queued", "queued"
    IN_PROGRESS = "in_progress", "in_progress"
    COMPLETED = "completed", "completed"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


class TaskRunEnvironment(models.TextChoices):
    LOCAL = "local", "local"
    CLOUD = "cloud", "cloud"


class Project(models.Model):
    """The unit of access: every task and run belongs to one project."""

    name = models.CharField(_("name"), max_length=200)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="taskruns_projects", verbose_name=_("members")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("project")
        verbose_name_plural = _("projects")

    def __str__(self) -> str:
        return self.name


class TaskQuerySet(models.QuerySet["Task"]):
    def alive(self) -> TaskQuerySet:
        """Tasks that are not soft-deleted."""
        return self.filter(deleted_at__isnull=True)


class Task(models.Model):
    """A piece of work for a coding agent; each attempt at it is a TaskRun."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="tasks", verbose_name=_("project")
    )
    title = models.CharField(_("title"), max_length=255)
    description = models.TextField(_("description"), blank=True, default="")
    repository = models.CharField(_("repository"), max_length=255, blank=True, default="")
    json_schema = models.JSONField(
        _("output JSON schema"),
        null=True,
        blank=True,
        help_text=_("JSON Schema that a run's output must match."),
        validators=[check_schema],
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    deleted_at = models.DateTimeField(_("deleted at"), null=True, blank=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("task")
        verbose_name_plural = _("tasks")
        indexes = [models.Index(fields=["project", "-created_at"], name="taskruns_task_project_created")]

    def __str__(self) -> str:
        return self.title


class TaskRun(models.Model):
    """One execution of a task by an agent, locally or in a cloud worker.

    Rows are records: they are never deleted through the API, and every write goes through
    taskruns.updates so that the transition rules and the version counter hold.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="runs", verbose_name=_("task"))
    # Denormalised from the task so that scoping a run needs no join.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="runs", verbose_name=_("project")
    )
    status = models.CharField(
        _("status"), max_length=20, choices=TaskRunStatus.choices, default=TaskRunStatus.QUEUED
    )
    environment = models.CharField(
        _("environment"), max_length=10, choices=TaskRunEnvironment.choices, default=TaskRunEnvironment.LOCAL
    )
    # Null is part of PostHog's contract for these (a client sends null to clear), distinct from "".
    stage = models.CharField(_("stage"), max_length=100, null=True, blank=True)  # noqa: DJ001
    branch = models.CharField(_("branch"), max_length=255, null=True, blank=True)  # noqa: DJ001
    error_message = models.TextField(_("error message"), null=True, blank=True)  # noqa: DJ001
    output = StoredJSONField(_("output"), null=True, blank=True)
    state = StoredJSONField(_("state"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    # The run's lifecycle (design §12): when it entered its current status, the executor's
    # last sign of life, a pending cooperative cancel, and why the server itself ended it.
    status_changed_at = models.DateTimeField(
        _("status changed at"), default=timezone.now, help_text=_("When the run entered its current status.")
    )
    last_heartbeat_at = models.DateTimeField(_("last heartbeat at"), null=True, blank=True, editable=False)
    cancel_requested_at = models.DateTimeField(_("cancel requested at"), null=True, blank=True)
    heartbeat_timeout = models.DurationField(
        _("heartbeat timeout"),
        null=True,
        blank=True,
        help_text=_(
            "An in-progress run silent for longer than this is reaped (failed with error code "
            "heartbeat_timeout). Empty: never reaped."
        ),
    )
    # Null, not "": absent is part of the representation, like error_message.
    error_code = models.CharField(_("error code"), max_length=40, null=True, blank=True)  # noqa: DJ001
    version = models.PositiveBigIntegerField(
        _("version"), default=1, help_text=_("Grows by one on every write of the row.")
    )
    # The change feed's order (taskruns.feed), owned by the database: a trigger (migration 0010)
    # sets it whenever a row is inserted or its version moves, and keeps it otherwise.
    change_number = models.BigIntegerField(_("change number"), default=0, editable=False)
    # Kept by taskruns.updates.append_log in the statement that checks the log's limit, so that
    # concurrent appends cannot pass it together, and so that whether a run has a log (its
    # `log_url`, its ETag) is read off the row instead of looked up in the log on every read.
    log_entry_count = models.PositiveIntegerField(_("log entries"), default=0, editable=False)
    # Bytes of the log's entries as compact JSON, bounded by TASKRUNS["LOG_MAX_BYTES_PER_RUN"].
    log_byte_count = models.PositiveBigIntegerField(_("log bytes"), default=0, db_default=0, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("task run")
        verbose_name_plural = _("task runs")
        indexes = [
            models.Index(fields=["task", "-created_at"], name="taskruns_run_task_created"),
            # The run lists' filters and orderings (taskruns.filters) and the change feed
            # (taskruns.feed), per task and per project.
            models.Index(fields=["project", "-created_at"], name="taskruns_run_project_created"),
            models.Index(fields=["task", "-updated_at"], name="taskruns_run_task_updated"),
            models.Index(fields=["project", "-updated_at"], name="taskruns_run_project_updated"),
            models.Index(fields=["task", "status", "-created_at"], name="taskruns_run_task_status"),
            models.Index(fields=["project", "status", "-created_at"], name="taskruns_run_project_statuses"),
            models.Index(fields=["task", "change_number", "id"], name="taskruns_run_task_change"),
            models.Index(fields=["project", "change_number", "id"], name="taskruns_run_project_change"),
            # The reaper's candidates (taskruns.reaper): only the runs that can be stale are in
            # these partial indexes, so finding them does not read the finished runs.
            models.Index(
                fields=["status_changed_at"],
                name="taskruns_run_reap_in_progress",
                condition=models.Q(status="in_progress", heartbeat_timeout__isnull=False),
            ),
            models.Index(
                fields=["status_changed_at"],
                name="taskruns_run_reap_queued",
                condition=models.Q(status="queued"),
            ),
        ]

    def __str__(self) -> str:
        # Short: the admin's breadcrumbs, history and messages name a run by it (two full UUIDs
        # crowded the page); the id's first eight hex digits are what the run list shows.
        return f"run {str(self.id)[:8]} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse(
            "taskruns:run-detail",
            kwargs={"project_id": self.project_id, "task_id": self.task_id, "pk": self.pk},
        )

    @property
    def has_log(self) -> bool:
        return self.log_entry_count > 0


class ApiKey(models.Model):
    """A Bearer key acting as its user. Only a hash is stored; the key is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="taskruns_api_keys",
        verbose_name=_("user"),
    )
    name = models.CharField(_("name"), max_length=100)
    # The public head of the key, used to find the row before the hash is compared.
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    key_hash = models.CharField(_("key hash"), max_length=64, editable=False)
    projects = models.ManyToManyField(
        Project,
        blank=True,
        related_name="+",
        verbose_name=_("limited to projects"),
        help_text=_("Leave empty to allow every project the user can see."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    expires_at = models.DateTimeField(
        _("expires at"), null=True, blank=True, help_text=_("Leave empty for a key that does not expire.")
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())


class TaskRunLogEntry(models.Model):
    """One entry of a run's log, exactly as the agent sent it, with the time it arrived."""

    run = models.ForeignKey(
        TaskRun, on_delete=models.CASCADE, related_name="log_entries", verbose_name=_("run")
    )
    entry = models.JSONField(_("entry"))
    created_at = models.DateTimeField(_("received at"), auto_now_add=True)

    class Meta:
        # The id is the order of arrival: entries of one call are inserted in order.
        ordering = ["id"]
        verbose_name = _("log entry")
        verbose_name_plural = _("log entries")
        indexes = [models.Index(fields=["run", "id"], name="taskruns_log_run_id")]

    def __str__(self) -> str:
        return f"log entry {self.pk} of run {self.run_id}"


class TaskRunEventKind(models.TextChoices):
    CREATED = "created", _("created")
    STATUS_CHANGED = "status_changed", _("status changed")
    ENVIRONMENT_CHANGED = "environment_changed", _("environment changed")
    RESUMED_IN_CLOUD = "resumed_in_cloud", _("resumed in cloud")
    OUTPUT_SET = "output_set", _("output set")
    CANCEL_REQUESTED = "cancel_requested", _("cancel requested")
    REAPED = "reaped", _("reaped")


class TaskRunEvent(models.Model):
    """An append-only record of something that happened to a run, and who did it."""

    run = models.ForeignKey(TaskRun, on_delete=models.CASCADE, related_name="events", verbose_name=_("run"))
    kind = models.CharField(_("kind"), max_length=30, choices=TaskRunEventKind.choices)
    from_value = models.CharField(_("from"), max_length=30, blank=True, default="")
    to_value = models.CharField(_("to"), max_length=30, blank=True, default="")
    state_keys_set = models.JSONField(_("state keys set"), default=list, blank=True)
    state_keys_removed = models.JSONField(_("state keys removed"), default=list, blank=True)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("user"),
    )
    actor_api_key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("API key")
    )
    via = models.CharField(_("via"), max_length=10, help_text=_("api, admin or system"))
    # A default in the database too: the one-statement PATCH inserts events without naming it.
    note = models.CharField(
        _("note"),
        max_length=500,
        blank=True,
        default="",
        db_default="",
        help_text=_("e.g. why it was cancelled"),
    )
    created_at = models.DateTimeField(_("at"), auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("run event")
        verbose_name_plural = _("run events")
        indexes = [models.Index(fields=["run", "id"], name="taskruns_event_run_id")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.from_value}→{self.to_value}".strip()
