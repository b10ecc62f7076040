"""Admin screens. Run changes made here go through taskruns.updates like any API write.

Staff who are not superusers see what the API would show them (design §2): the projects the
access policy gives them, those projects' tasks and runs, and their own API keys; a key is
issued only to oneself (a superuser may issue one to anyone), and its raw value is shown on the
page that answers the form, never put in a message (Django keeps messages in a signed, not
encrypted, cookie).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.db.models import Case, Value, When
from django.http import Http404, HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import rules, updates

if TYPE_CHECKING:  # the stubs' generics; Django's admin classes take no subscript at run time
    ModelAdmin = admin.ModelAdmin[Any]
    TabularInline = admin.TabularInline[Any, Any]
else:
    ModelAdmin, TabularInline = admin.ModelAdmin, admin.TabularInline
from .access import policy_projects
from .exceptions import TaskRunsError
from .history import Actor
from .keys import assign_new_key, revoke
from .models import ApiKey, Project, Task, TaskRun, TaskRunEvent, TaskRunStatus
from .reaper import reap
from .stream import BadStreamRequest, event_stream
from .timeline import timeline_svg
from .transitions import is_allowed


def pretty_json(value: Any) -> str:
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False),
    )


class ScopedAdmin(ModelAdmin):
    """Rows limited to the user's projects for staff who are not superusers; ``project_path``
    is the lookup from the model to its project."""

    project_path = "project"

    def get_queryset(self, request: Any) -> Any:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.project_path}__in": policy_projects(request.user)})

    def formfield_for_foreignkey(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        if db_field.related_model is Project and not request.user.is_superuser:
            kwargs["queryset"] = policy_projects(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        if db_field.related_model is Project and not request.user.is_superuser:
            kwargs["queryset"] = policy_projects(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


def seconds(moment: Any) -> str:
    """A time to the second, in UTC, on one line."""
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def utc_seconds(field: str, label: Any) -> Any:
    """An admin column or read-only field showing the model's time ``field`` with seconds()
    (Django's own display follows the host's DATETIME_FORMAT, to the minute by default)."""

    @admin.display(description=label, ordering=field)
    def show(self: Any, obj: Any) -> str:
        return seconds(getattr(obj, field))

    return show


@admin.register(Project)
class ProjectAdmin(ScopedAdmin):
    project_path = "pk"
    list_display = ["name", "id", "created"]
    search_fields = ["name"]
    filter_horizontal = ["members"]

    created = utc_seconds("created_at", _("created (UTC)"))

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        # Deleting a project deletes its tasks and runs, which the admin never deletes (runs are
        # records): the button is offered only for a project that has neither, and there is no
        # bulk delete that would end on "your account doesn't have permission".
        if obj is None or obj.tasks.exists() or obj.runs.exists():
            return False
        return super().has_delete_permission(request, obj)


class ReadOnlyInline(TabularInline):
    """An inline that only shows rows: runs and events are never added or deleted here."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        return self.fields


class TaskRunInline(ReadOnlyInline):
    model = TaskRun
    fields = ["id", "status", "environment", "stage", "branch", "version", "updated"]
    show_change_link = True
    ordering = ["-created_at"]

    updated = utc_seconds("updated_at", _("updated (UTC)"))


@admin.register(Task)
class TaskAdmin(ScopedAdmin):
    list_display = ["title", "project", "repository", "created", "deleted"]
    list_filter = [("project", admin.RelatedOnlyFieldListFilter), ("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["title", "repository"]
    readonly_fields = ["id", "created_by", "created", "updated"]
    inlines = [TaskRunInline]

    created = utc_seconds("created_at", _("created (UTC)"))
    updated = utc_seconds("updated_at", _("updated (UTC)"))
    deleted = utc_seconds("deleted_at", _("deleted (UTC)"))

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        # A task is deleted through the API (softly: its runs are records and stay); the admin
        # offers no delete button that would end in "no permission to delete task runs".
        return False

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        # A task never moves to another project (design §2): its runs, their keys' reach and
        # the members who may see them all follow the project it was created in.
        return [*self.readonly_fields, "project"] if obj is not None else self.readonly_fields


def _run_action(name: str, description: Any, apply: Any, refusal: Any) -> Any:
    """An admin action that applies ``apply(run_id, actor)`` to each selected run through the
    rules, after a confirmation page listing what will change and what the rules will refuse
    (``refusal(run)``: the reason, or None), then reports what changed and what was refused."""

    def action(modeladmin: Any, request: Any, queryset: Any) -> Any:
        if request.POST.get("post") != "yes":
            runs = list(queryset.select_related("task"))
            plan = [(run, refusal(run)) for run in runs]
            context = {
                **modeladmin.admin_site.each_context(request),
                "opts": modeladmin.opts,
                "title": _("Are you sure?"),
                "description": description,
                "action": name,
                "will_change": [run for run, reason in plan if reason is None],
                "will_refuse": [(run, reason) for run, reason in plan if reason is not None],
                "selected": [run.pk for run in runs],
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/taskruns/taskrun/confirm_action.html", context)
        changed, refused = 0, []
        actor = Actor(user=request.user, via="admin")
        for run_id in queryset.values_list("pk", flat=True):
            try:
                apply(run_id, actor)
                changed += 1
            except TaskRunsError as exc:
                refused.append(f"{run_id}: {exc.detail}")
        if changed:
            modeladmin.message_user(
                request, ngettext("%d run changed.", "%d runs changed.", changed) % changed, messages.SUCCESS
            )
        if refused:
            modeladmin.message_user(
                request,
                _("%(count)d could not be changed: %(reasons)s")
                % {"count": len(refused), "reasons": "; ".join(refused)},
                messages.WARNING,
            )
        return None

    action.__name__ = name
    action.short_description = description  # type: ignore[attr-defined]
    return action


def _status_action(status: str) -> Any:
    return _run_action(
        f"mark_{status}",
        _("Mark selected runs as %(status)s") % {"status": status},
        lambda run_id, actor: updates.update_run(run_id, {"status": status}, actor),
        lambda run: (
            None
            if is_allowed(run.status, status)
            else _("the rules do not allow %(current)s → %(target)s")
            % {"current": run.status, "target": status}
        ),
    )


#: Badge colours of the statuses (background, text), readable in the light and dark themes.
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    TaskRunStatus.NOT_STARTED: ("#e2e3e5", "#383d41"),
    TaskRunStatus.QUEUED: ("#cce5ff", "#004085"),
    TaskRunStatus.IN_PROGRESS: ("#fff3cd", "#856404"),
    TaskRunStatus.COMPLETED: ("#d4edda", "#155724"),
    TaskRunStatus.FAILED: ("#f8d7da", "#721c24"),
    TaskRunStatus.CANCELLED: ("#d6d8d9", "#1b1e21"),
}


def status_badge(status: str) -> str:
    background, colour = STATUS_COLOURS.get(status, ("#e2e3e5", "#383d41"))
    return format_html(
        '<span class="taskruns-status" style="background:{};color:{};padding:1px 8px;border-radius:9px;'
        'white-space:nowrap;font-weight:600">{}</span>',
        background,
        colour,
        status,
    )


class TaskRunEventInline(ReadOnlyInline):
    """The run's history, read-only: events are append-only."""

    model = TaskRunEvent
    fields = [
        "at",
        "kind",
        "from_value",
        "to_value",
        "state_keys_set",
        "state_keys_removed",
        "actor_user",
        "actor_api_key",
        "via",
        "note",
    ]
    ordering = ["id"]

    @admin.display(description=_("at (UTC)"))
    def at(self, event: TaskRunEvent) -> str:
        return seconds(event.created_at)


class StaleFilter(admin.SimpleListFilter):
    """Runs that are stale now, by the rule book's one definition (taskruns.rules.stale)."""

    title = _("stale")
    parameter_name = "stale"

    def lookups(self, request: Any, model_admin: Any) -> Any:
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() == "yes":
            return queryset.filter(rules.stale(timezone.now()))
        if self.value() == "no":
            return queryset.exclude(rules.stale(timezone.now()))
        return queryset


@admin.register(TaskRun)
class TaskRunAdmin(ScopedAdmin):
    # Fits beside the navigation and the filters at 1280 pixels: the project is the task's (and
    # a filter), the environment shares the status's cell, and a task title or a branch may
    # wrap (Django keeps a foreign key's cell on one line).
    list_display = [
        "short_id",
        "task_title",
        "status_label",
        "stage",
        "branch_label",
        "version",
        "updated_short",
        "is_stale",
    ]
    list_filter = ["status", "environment", StaleFilter, ("project", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["task", "project"]
    search_fields = ["branch", "stage", "task__title"]
    fields = [
        "id",
        "task",
        "project",
        "status",
        "environment",
        "stage",
        "branch",
        "error_message",
        "state_json",
        "output_json",
        "version",
        "log_entry_count",
        "created",
        "updated",
        "started",
        "completed",
        "status_changed",
        "last_heartbeat",
        "heartbeat_timeout",
        "cancel_requested",
        "error_code",
        "timeline",
    ]
    # Status and environment move only through the actions, which apply the transition rules.
    readonly_fields = [str(f) for f in fields if f not in ("stage", "branch", "error_message")]
    inlines = [TaskRunEventInline]
    change_form_template = "admin/taskruns/taskrun/change_form.html"  # a "Watch live" link
    actions = [_status_action(s) for s in TaskRunStatus.values if s != TaskRunStatus.NOT_STARTED] + [
        _run_action(
            "resume_in_cloud",
            _("Resume selected runs in cloud"),
            updates.resume_in_cloud,
            lambda run: None if (refused := rules.resume_refusal(run)) is None else refused.detail,
        ),
        "reap_now",
    ]

    def get_queryset(self, request: Any) -> Any:
        stale = Case(When(rules.stale(timezone.now()), then=Value(True)), default=Value(False))
        return super().get_queryset(request).annotate(stale=stale)

    def get_urls(self) -> Any:
        names = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<path:object_id>/live/", self.admin_site.admin_view(self.live_view), name=f"{names}_live"),
            path(
                "<path:object_id>/live/stream/",
                self.admin_site.admin_view(self.live_stream),
                name=f"{names}_live_stream",
            ),
            *super().get_urls(),
        ]

    def viewable_run(self, request: Any, object_id: str) -> TaskRun:
        run: TaskRun | None = self.get_object(request, object_id)  # within the user's scope (ScopedAdmin)
        if run is None or not self.has_view_permission(request, run):
            raise Http404
        return run

    def live_view(self, request: Any, object_id: str) -> Any:
        """The run live: status, stage, state and the log's tail, updated in place from the
        stream below by the browser's EventSource (no outside assets)."""
        run = self.viewable_run(request, object_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": run,
            "title": _("Watching run %(id)s") % {"id": run.pk},
            "stream_url": reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_live_stream",
                args=[run.pk],
                current_app=self.admin_site.name,
            ),
        }
        return TemplateResponse(request, "admin/taskruns/taskrun/live.html", context)

    def live_stream(self, request: Any, object_id: str) -> Any:
        """The run's stream (taskruns.stream) for the live page, with its state in each state
        frame; scoped by the admin's rules instead of the API's."""
        run = self.viewable_run(request, object_id)
        try:
            return event_stream(request, run.pk, with_state=True)
        except BadStreamRequest as refused:
            return HttpResponseBadRequest(str(refused.message))

    @admin.display(description=_("run"), ordering="id")
    def short_id(self, run: TaskRun) -> str:
        return str(run.pk)[:8]

    @admin.display(description=_("status"), ordering="status")
    def status_label(self, run: TaskRun) -> str:
        return format_html("{}<br><small>{}</small>", status_badge(run.status), run.environment)

    @admin.display(description=_("task"), ordering="task__title")
    def task_title(self, run: TaskRun) -> str:
        return run.task.title

    @admin.display(description=_("branch"), ordering="branch")
    def branch_label(self, run: TaskRun) -> str:
        if not run.branch:
            return "-"
        parts = re.split(r"(?<=[/_.-])", run.branch)
        return format_html_join(mark_safe("<wbr>"), "{}", ((part,) for part in parts))

    created = utc_seconds("created_at", _("created (UTC)"))
    updated = utc_seconds("updated_at", _("updated (UTC)"))
    #: The run list's column: "(UTC)" would make the header wider than the time under it.
    updated_short = utc_seconds("updated_at", _("updated"))
    started = utc_seconds("started_at", _("started (UTC)"))
    completed = utc_seconds("completed_at", _("completed (UTC)"))
    status_changed = utc_seconds("status_changed_at", _("status changed (UTC)"))
    last_heartbeat = utc_seconds("last_heartbeat_at", _("last heartbeat (UTC)"))
    cancel_requested = utc_seconds("cancel_requested_at", _("cancel requested (UTC)"))

    @admin.display(description=_("time in each status"))
    def timeline(self, run: TaskRun) -> str:
        return timeline_svg(run)

    def change_view(self, request: Any, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        run = self.get_object(request, object_id)
        if run is not None:  # a readable heading: the task's title and the run's short id
            subtitle = _("%(task)s · run %(id)s") % {"task": run.task.title, "id": str(run.pk)[:8]}
            extra_context = {**(extra_context or {}), "subtitle": subtitle}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description=_("stale"), boolean=True, ordering="stale")
    def is_stale(self, run: TaskRun) -> bool:
        return bool(getattr(run, "stale", False))

    @admin.action(description=_("Reap selected stale runs now"))
    def reap_now(self, request: Any, queryset: Any) -> Any:
        """The reaper's own pass (taskruns.reaper.reap), limited to the selected runs: the ones
        that are not stale are left alone."""
        result = reap(among=queryset, actor=Actor(user=request.user, via="admin"))
        self.message_user(
            request,
            _(
                "%(reaped)d reaped, %(kept)d kept by the liveness check, %(skipped)d changed meanwhile; "
                "%(fresh)d of the selected runs are not stale."
            )
            % {
                "reaped": len(result.reaped),
                "kept": len(result.kept),
                "skipped": len(result.skipped),
                "fresh": queryset.count() - len(result.found),
            },
            messages.SUCCESS if result.reaped else messages.WARNING,
        )

    @admin.display(description=_("state"))
    def state_json(self, run: TaskRun) -> str:
        return pretty_json(run.state)

    @admin.display(description=_("output"))
    def output_json(self, run: TaskRun) -> str:
        return pretty_json(run.output)

    def get_search_results(self, request: Any, queryset: Any, search_term: Any) -> Any:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            run_id = uuid.UUID(search_term.strip())
        except ValueError:
            return results, may_have_duplicates
        return results | queryset.filter(pk=run_id), may_have_duplicates

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False  # runs are records

    def save_model(self, request: Any, obj: Any, form: Any, change: Any) -> Any:
        # Through the same write path as the API, so the row is locked and its version grows.
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        updates.update_run(obj.pk, changes, Actor(user=request.user, via="admin"))


@admin.register(ApiKey)
class ApiKeyAdmin(ModelAdmin):
    created_template = "admin/taskruns/apikey/created.html"

    # Times to the second, and revocation and expiry in one column, so that every column fits
    # a 1280-pixel screen beside the filters (Django's own format wraps each over three lines).
    list_display = ["name", "user", "prefix", "created", "last_used", "key_state"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), ("expires_at", admin.EmptyFieldListFilter)]
    filter_horizontal = ["projects"]
    actions = ["revoke_keys"]

    created = utc_seconds("created_at", _("created (UTC)"))
    last_used = utc_seconds("last_used_at", _("last used (UTC)"))
    revoked = utc_seconds("revoked_at", _("revoked (UTC)"))

    @admin.display(description=_("state (UTC)"), ordering="revoked_at")
    def key_state(self, key: ApiKey) -> str:
        """Revoked, expired, expiring or active, with the moment: one column where three would
        not fit beside the filters at 1280 pixels."""
        if key.revoked_at is not None:
            return format_html("{} {}", _("revoked"), seconds(key.revoked_at))
        if key.expires_at is not None:
            return format_html(
                "{} {}", _("expired") if key.is_expired() else _("expires"), seconds(key.expires_at)
            )
        return str(_("active"))

    def get_search_fields(self, request: Any) -> Any:
        # The host's user model names its login field (username, email…).
        return ["name", "prefix", f"user__{get_user_model().USERNAME_FIELD}"]

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        if obj is None:
            return []
        return ["user", "prefix", "created", "last_used", "revoked"]

    def get_fields(self, request: Any, obj: Any = None) -> Any:
        if obj is None:
            return ["user", "name", "projects", "expires_at"]
        return [
            "user",
            "name",
            "prefix",
            "projects",
            "created",
            "last_used",
            "expires_at",
            "revoked",
        ]

    def get_queryset(self, request: Any) -> Any:
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)

    def formfield_for_foreignkey(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        if db_field.name == "user" and not request.user.is_superuser:
            kwargs["queryset"] = get_user_model()._default_manager.filter(pk=request.user.pk)
            kwargs["initial"] = request.user.pk
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        if db_field.related_model is Project and not request.user.is_superuser:
            kwargs["queryset"] = policy_projects(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: Any, obj: Any, form: Any, change: Any) -> Any:
        if not change:
            # Kept on the request for response_add, the page that shows it once.
            request.taskruns_raw_key = assign_new_key(obj)
        super().save_model(request, obj, form, change)

    def response_add(self, request: Any, obj: Any, post_url_continue: Any = None) -> Any:
        raw_key = getattr(request, "taskruns_raw_key", None)
        if raw_key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("API key created"),
            "api_key": obj,
            "raw_key": raw_key,
            "change_url": reverse(
                "admin:taskruns_apikey_change", args=[obj.pk], current_app=self.admin_site.name
            ),
            "list_url": reverse("admin:taskruns_apikey_changelist", current_app=self.admin_site.name),
        }
        response = TemplateResponse(request, self.created_template, context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description=_("Revoke selected API keys"))
    def revoke_keys(self, request: Any, queryset: Any) -> Any:
        count = revoke(queryset)
        self.message_user(
            request, ngettext("%d key revoked.", "%d keys revoked.", count) % count, messages.SUCCESS
        )
