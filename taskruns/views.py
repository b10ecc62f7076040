"""Thin viewsets: they pick the queryset, the serializer and the permission, then hand the
change to taskruns.updates."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, cast

from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_filters.utils import translate_validation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.metadata import SimpleMetadata
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from . import feed, rows, rules, updates
from .access import RunScope, visible_projects
from .conf import app_settings
from .etags import etag_for, if_match_versions, if_none_match_hits
from .exceptions import DatabaseUnavailable, PreconditionFailed, TaskRunsError
from .filters import ProjectRunFilterSet, RunFilterBackend, RunFilterSet
from .history import Actor
from .models import Project, Task, TaskRun, TaskRunEvent, TaskRunLogEntry
from .negotiation import RememberedContentNegotiation
from .openapi import TaskRunsAutoSchema
from .parsers import TaskRunsJSONParser
from .renderers import TaskRunsJSONRenderer
from .serializers import (
    AppendLogSerializer,
    CancelSerializer,
    HeartbeatSerializer,
    SetOutputSerializer,
    TaskRunCreateSerializer,
    TaskRunEventSerializer,
    TaskRunSerializer,
    TaskRunUpdateSerializer,
    TaskSerializer,
    run_list_answer,
)
from .storedjson import adopt_stored, select_as_stored

logger = logging.getLogger(__name__)

MAX_BIGINT = 2**63 - 1
# A run's JSON columns, passed from the database to the response as stored (taskruns.storedjson).
RUN_JSON_FIELDS = ("state", "output")


class TaskRunsPagination(LimitOffsetPagination):
    """Limit/offset pages of 50 by default and 100 at most, as PostHog's clients expect.

    A page's count and offset cost what the rows before it cost, so both are bounded by
    ``TASKRUNS["LIST_COUNT_LIMIT"]``: ``count`` is exact up to it and that number past it, and an
    offset at or past it is a 400 ``offset_too_large`` pointing at cursor pages (``?cursor=``)."""

    default_limit = 50
    max_limit = 100

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        most = app_settings.LIST_COUNT_LIMIT
        if self.get_offset(request) >= most:
            message = _("Offsets stop at {most}: use cursor pages (?cursor=) to go further.")
            raise ValidationError({"offset": [message.format(most=most)]}, code="offset_too_large")
        return super().paginate_queryset(queryset, request, view)

    def get_count(self, queryset: Any) -> int:
        return int(queryset[: app_settings.LIST_COUNT_LIMIT].count())


class RunCursorPagination(CursorPagination):
    """Cursor pages of a run list (``?cursor=``, empty to start), in the list's ordering: a
    page costs the same however deep it is. A cursor this list did not give is a 400."""

    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 100

    def __init__(self, ordering: str) -> None:
        self.ordering = (ordering, "-id" if ordering.startswith("-") else "id")

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError(
                {"cursor": [_("Not a cursor of this list; send an empty cursor to start.")]},
                code="invalid_cursor",
            ) from None


class ProjectScopedViewSet(viewsets.GenericViewSet[Any]):
    """Base of the app's viewsets: scoping to the URL's project, pagination, error extras.

    Everything DRF would take from the host's ``REST_FRAMEWORK`` defaults is the app's own here:
    authentication, permissions and the exception handler come from ``TASKRUNS`` (read on each
    request), and parsing, rendering, content negotiation, pagination, filtering, throttling,
    versioning and OPTIONS metadata are fixed, so adopting the app changes nothing on the host's routes and
    the host's defaults change nothing on the app's."""

    parser_classes = [TaskRunsJSONParser]
    renderer_classes = [TaskRunsJSONRenderer, BrowsableAPIRenderer]
    content_negotiation_class = RememberedContentNegotiation
    lookup_value_regex = "[^/]+"  # anything up to the next slash reaches the view and 404s as JSON
    pagination_class = TaskRunsPagination
    filter_backends: tuple[Any, ...] = ()
    throttle_classes = ()
    versioning_class = None
    metadata_class = SimpleMetadata
    schema = TaskRunsAutoSchema()

    def get_authenticators(self) -> Any:
        return [authenticator() for authenticator in app_settings.import_each("AUTHENTICATION_CLASSES")]

    def get_permissions(self) -> Any:
        return [permission() for permission in app_settings.import_each("PERMISSION_CLASSES")]

    def get_exception_handler(self) -> Any:
        return app_settings.import_from("EXCEPTION_HANDLER")

    @property
    def project_id(self) -> int:
        raw = self.kwargs["project_id"]
        # Malformed ids are unknown ids: 404. (Not int(): it also reads "٣" and " 3".)
        if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_BIGINT:
            raise NotFound()
        return int(raw)

    def get_project(self) -> Project:
        """The URL's project, or 404 when this request may not see it."""
        return get_object_or_404(visible_projects(self.request), pk=self.project_id)

    def visible_tasks(self) -> Any:
        """Live tasks of the URL's project, if this request may see that project."""
        return Task.objects.alive().filter(
            project_id=self.project_id, project__in=visible_projects(self.request)
        )

    def handle_exception(self, exc: Any) -> Any:
        if isinstance(exc, OperationalError | InterfaceError):
            # The database went away or failed mid-request: nothing was kept (a write is one
            # statement or one transaction), so the client may retry. Not a 500.
            logger.warning("database unavailable: %s: %s", exc.__class__.__name__, exc)
            exc = DatabaseUnavailable()
        response = super().handle_exception(exc)
        # Whatever shape the configured exception handler gives errors, a conflict also tells
        # the client the run's current status (and allowed targets) so it can recover, and a
        # failed precondition the current run and its ETag.
        if isinstance(exc, TaskRunsError) and isinstance(response.data, dict):
            response.data.update(exc.extra)
        if isinstance(exc, PreconditionFailed) and isinstance(response.data, dict):
            response.data["run"] = TaskRunSerializer(exc.run, context=self.get_serializer_context()).data
            response["ETag"] = etag_for(exc.run)
        return response


def parse_uuid(value: str) -> uuid.UUID:
    """A UUID from the URL; anything malformed is a 404, like an unknown id."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound() from None


def _path_ids(*ids: tuple[str, Any, str]) -> list[OpenApiParameter]:
    # The URL patterns accept anything up to the next slash (so a malformed id is a JSON 404),
    # which says nothing of the ids' types: they are declared here instead.
    return [OpenApiParameter(name, kind, OpenApiParameter.PATH, description=text) for name, kind, text in ids]


PROJECT_ID = ("project_id", int, "The project's id.")

#: Query parameters of a run list besides its filters.
LIST_PARAMETERS = [
    OpenApiParameter(
        "cursor",
        str,
        description="Cursor pages instead of limit/offset: send it empty to start, then follow "
        "`next`. A cursor page costs the same however deep it is.",
    ),
    OpenApiParameter(
        "changes_after",
        str,
        description="The change feed: `0` to start, then each answer's `next_cursor`. Answers "
        "`{results, next_cursor}`: the runs changed since, in change order, each in its newest form; "
        "a run of a deleted task as `{id, deleted: true}`. Takes no filter but `task`.",
    ),
]
#: Parameters the change feed takes besides ``changes_after``.
FEED_PARAMETERS = frozenset({"changes_after", "limit", "task", "format"})


class RunListViewSet(ProjectScopedViewSet):
    """A list of runs (a task's, or a whole project's): filters, limit/offset or cursor pages,
    and the change feed (design §14; taskruns.filters, taskruns.feed)."""

    filter_backends = (RunFilterBackend,)  # for the schema's parameters: list_runs filters
    filterset_class: type[RunFilterSet] = RunFilterSet

    def list_runs(self, runs: Any) -> Response:
        """The response to a list request over ``runs`` (the runs in scope)."""
        if "changes_after" in self.request.query_params:
            return self.change_feed(runs)
        filterset = self.filterset(runs)
        ordering = filterset.ordering_of()
        runs = filterset.qs.order_by(ordering, "-id" if ordering.startswith("-") else "id")
        runs = select_as_stored(runs, *RUN_JSON_FIELDS)
        paginator: Any = self.paginator
        if "cursor" in self.request.query_params:
            paginator = RunCursorPagination(ordering)
        page = [
            adopt_stored(run, *RUN_JSON_FIELDS)
            for run in paginator.paginate_queryset(runs, self.request, self)
        ]
        data = TaskRunSerializer(page, many=True, context=self.get_serializer_context()).data
        response: Response = paginator.get_paginated_response(data)
        return response

    def change_feed(self, runs: Any) -> Response:
        params = self.request.query_params
        if others := sorted(set(params) - FEED_PARAMETERS):
            message = _("The change feed takes no filter but task.")
            raise ValidationError({name: [message] for name in others}, code="not_with_changes_after")
        after = feed.Cursor.parse(params["changes_after"])
        runs = self.filterset(runs).qs.annotate(task_deleted_at=F("task__deleted_at"))
        limit = TaskRunsPagination().get_limit(self.request)
        page = feed.changes(select_as_stored(runs, *RUN_JSON_FIELDS), after, limit or 50)
        context = self.get_serializer_context()
        results = [
            {"id": str(run.id), "deleted": True}
            if getattr(run, "task_deleted_at", None) is not None
            else TaskRunSerializer(adopt_stored(run, *RUN_JSON_FIELDS), context=context).data
            for run in page.runs
        ]
        return Response({"results": results, "next_cursor": str(page.next_cursor)})

    def filterset(self, runs: Any) -> RunFilterSet:
        """The request's filters over ``runs``; a value they cannot take is a 400."""
        filterset = self.filterset_class(self.request.query_params, queryset=runs, request=self.request)
        if not filterset.is_valid():
            # django-filter gives DRF's ValidationError, each message with its form error's code.
            raise cast(ValidationError, translate_validation(filterset.errors))
        return filterset


@extend_schema(parameters=_path_ids(PROJECT_ID, ("id", OpenApiTypes.UUID, "The task's id.")))
class TaskViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    ProjectScopedViewSet,
):
    """Tasks of a project. DELETE soft-deletes: the task disappears, its runs are kept."""

    queryset = Task.objects.none()  # the real one depends on the request; this types the schema
    serializer_class = TaskSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> Any:
        return self.visible_tasks().order_by("-created_at", "-id")

    def get_object(self) -> Any:
        parse_uuid(self.kwargs["pk"])
        return super().get_object()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.get_project()  # an unknown or hidden project is a 404, not an empty list
        return super().list(request, *args, **kwargs)

    def perform_create(self, serializer: Any) -> Any:
        serializer.save(project=self.get_project(), created_by=self.request.user)

    def perform_destroy(self, instance: Any) -> Any:
        # The task's runs are written too (their versions move), so that the change feed shows
        # each once more, as deleted (taskruns.feed).
        now = timezone.now()
        with transaction.atomic(using=rows.database_of(TaskRun)):
            Task.objects.filter(pk=instance.pk).update(deleted_at=now)
            TaskRun.objects.filter(task_id=instance.pk).update(version=F("version") + 1, updated_at=now)


@extend_schema(
    responses=TaskRunSerializer,
    parameters=_path_ids(
        PROJECT_ID,
        ("task_id", OpenApiTypes.UUID, "The task's id."),
        ("id", OpenApiTypes.UUID, "The run's id."),
    ),
)
class TaskRunViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    RunListViewSet,
):
    """Runs of a task. Runs are records: no PUT, no DELETE."""

    queryset = TaskRun.objects.none()
    serializer_class = TaskRunSerializer
    action_serializers = {
        "partial_update": TaskRunUpdateSerializer,
        "create": TaskRunCreateSerializer,
        "set_output": SetOutputSerializer,
        "append_log": AppendLogSerializer,
        "events": TaskRunEventSerializer,
        "cancel": CancelSerializer,
    }

    def get_serializer_class(self) -> Any:
        return self.action_serializers.get(self.action, TaskRunSerializer)

    def get_task(self) -> Task:
        task: Task = get_object_or_404(self.visible_tasks(), pk=parse_uuid(self.kwargs["task_id"]))
        return task

    def get_queryset(self) -> Any:
        runs = self.run_scope().runs().order_by("-created_at", "-id")
        return select_as_stored(runs, *RUN_JSON_FIELDS)

    def run_scope(self) -> RunScope:
        """The runs this request may read and write: the URL's live task, in a visible project."""
        task_id = parse_uuid(self.kwargs["task_id"])
        return RunScope(self.request, self.project_id, task_id)

    def get_object(self) -> Any:
        # The run is read with the scope as SQL (as the PATCH statement uses it): the most
        # frequent read of an agent, without compiling a queryset each time.
        run = updates.read_run(self.run_id, self.run_scope())
        if run is None:
            raise NotFound()
        return run

    @property
    def actor(self) -> Actor:
        return Actor.from_request(self.request)

    @extend_schema(parameters=LIST_PARAMETERS, responses=run_list_answer())
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The task's runs, newest first unless `ordering` says otherwise, filtered; limit/offset
        pages by default, cursor pages with `?cursor=`, the change feed with `?changes_after=`."""
        self.get_task()  # an unknown task is a 404, not an empty list
        return self.list_runs(self.run_scope().runs())

    @extend_schema(request=TaskRunCreateSerializer, responses={201: TaskRunSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        task = self.get_task()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self.run_response(self.perform_create(serializer, task), status=201)

    def perform_create(self, serializer: Any, task: Task) -> TaskRun:
        return updates.create_run(task, actor=self.actor, **serializer.validated_data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        run = self.get_object()
        if if_none_match_hits(request.headers.get("If-None-Match"), run):
            return Response(status=304, headers={"ETag": etag_for(run)})
        return self.run_response(run)

    @extend_schema(request=TaskRunUpdateSerializer, responses=TaskRunSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # DRF's UpdateModelMixin reads the object first; here the write itself checks the
        # scope, the precondition and the rules, so the serializer has no instance.
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self.run_response(self.perform_update(serializer))

    def perform_update(self, serializer: Any) -> TaskRun:
        return updates.update_run(
            self.run_id, serializer.validated_data, self.actor, **self.write_conditions()
        )

    @extend_schema(request=None, responses=TaskRunSerializer)
    @action(detail=True, methods=["post"])
    def resume_in_cloud(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Move the run into cloud as `queued` and start its cloud worker."""
        return self.run_response(updates.resume_in_cloud(self.run_id, self.actor, **self.write_conditions()))

    @extend_schema(
        request=CancelSerializer,
        responses={
            200: OpenApiResponse(
                TaskRunSerializer, "Cancelled now (the run had not started), or it had already ended."
            ),
            202: OpenApiResponse(
                TaskRunSerializer, "Cancel requested: the run's executor will stop and end it."
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Cancel the run cooperatively. A run no executor has yet (`not_started`, `queued`) is
        `cancelled` at once (200). An `in_progress` run gets `cancel_requested_at` (202): its
        executor learns it from its heartbeat, a GET or the stream, stops and writes a terminal
        status. A finished run is left as it is (200). Repeating a cancel is harmless."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reason = serializer.validated_data.get("reason", "")
        run = updates.cancel_run(self.run_id, reason, self.actor, **self.write_conditions())
        return self.run_response(run, status=202 if rules.cancel_is_pending(run) else 200)

    @extend_schema(request=None, responses=HeartbeatSerializer)
    @action(detail=True, methods=["post"])
    def heartbeat(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The executor of an `in_progress` run says it is alive (no body). The answer says
        whether to stop (`cancel_requested`). On a run in any other status the answer is 409
        `run_not_in_progress`: the executor must stop. Changes neither the run's version nor
        its `updated_at`."""
        beat = updates.heartbeat(self.run_id, scope=self.run_scope())
        return Response(HeartbeatSerializer(beat).data)

    @extend_schema(request=SetOutputSerializer, responses=TaskRunSerializer)
    @action(detail=True, methods=["patch"])
    def set_output(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Replace the run's output; validated against the task's JSON Schema, and a valid
        output completes a non-terminal run of a task that has one."""
        run = self.get_object()
        serializer = self.get_serializer(
            data=request.data, context={**self.get_serializer_context(), "task": run.task}
        )
        serializer.is_valid(raise_exception=True)
        output = serializer.validated_data["output"]
        complete = run.task.json_schema is not None
        return self.run_response(
            updates.set_output(run.pk, output, complete=complete, actor=self.actor, **self.write_conditions())
        )

    @extend_schema(request=AppendLogSerializer, responses=TaskRunSerializer)
    @action(detail=True, methods=["post"])
    def append_log(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Append entries to the run's log, in order. The run's version does not change."""
        run = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        updates.append_log(
            run, serializer.validated_data["entries"], if_match=self.write_conditions()["if_match"]
        )
        return self.run_response(run)

    @extend_schema(responses={(200, "application/x-ndjson"): OpenApiTypes.STR})
    @action(detail=True, methods=["get"], url_path="logs", url_name="logs")
    def logs(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        """The run's log as newline-delimited JSON, oldest first (empty when there is none)."""
        run = self.get_object()
        entries = TaskRunLogEntry.objects.filter(run=run).order_by("id").values_list("entry", flat=True)
        lines = (
            json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
            for entry in entries.iterator()
        )
        return StreamingHttpResponse(lines, content_type="application/x-ndjson")

    @extend_schema(responses=TaskRunEventSerializer(many=True))
    @action(detail=True, methods=["get"])
    def events(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The run's history, oldest first: who changed what, when."""
        run = self.get_object()
        events = (
            TaskRunEvent.objects.filter(run=run).select_related("actor_user", "actor_api_key").order_by("id")
        )
        page = self.paginate_queryset(events)
        return self.get_paginated_response(TaskRunEventSerializer(page, many=True).data)

    @property
    def run_id(self) -> uuid.UUID:
        return parse_uuid(self.kwargs["pk"])

    def write_conditions(self) -> dict[str, Any]:
        """What a write must hold to: the request's scope and its If-Match precondition."""
        return {
            "scope": self.run_scope(),
            "if_match": if_match_versions(self.request.headers.get("If-Match")),
        }

    def run_response(self, run: TaskRun, status: int = 200) -> Response:
        data = TaskRunSerializer(run, context=self.get_serializer_context()).data
        return Response(data, status=status, headers={"ETag": etag_for(run)})


@extend_schema(parameters=_path_ids(PROJECT_ID))
class ProjectRunViewSet(RunListViewSet):
    """Every run of a project, across its live tasks: the same filters and pages as a task's
    run list, plus `task`."""

    queryset = TaskRun.objects.none()
    serializer_class = TaskRunSerializer
    filterset_class = ProjectRunFilterSet

    @extend_schema(parameters=LIST_PARAMETERS, responses=run_list_answer())
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The project's runs across its tasks, newest first unless `ordering` says otherwise,
        filtered; limit/offset pages by default, cursor pages with `?cursor=`, the change feed
        with `?changes_after=` (where a run of a deleted task appears once as a tombstone)."""
        project = self.get_project()
        runs = TaskRun.objects.filter(project=project)
        if "changes_after" not in request.query_params:
            runs = runs.filter(task__deleted_at__isnull=True)
        return self.list_runs(runs)
