"""A task's runs: read, PATCH, and the run actions (resume, output, log, history, cancel,
heartbeat). Thin: each picks its serializer and hands the change to taskruns.updates."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from .. import rules, updates
from ..access import RunScope
from ..browsable import run_patch_form
from ..etags import etag_for, if_match_versions, if_none_match_hits
from ..history import Actor
from ..models import Task, TaskRun, TaskRunEvent, TaskRunLogEntry
from ..renderers import EventStreamRenderer, NDJSONRenderer, StreamRenderer, TaskRunsJSONRenderer
from ..serializers import (
    AppendLogSerializer,
    CancelSerializer,
    HeartbeatSerializer,
    SetOutputSerializer,
    TaskRunCreateSerializer,
    TaskRunEventSerializer,
    TaskRunSerializer,
    TaskRunUpdateSerializer,
    run_list_answer,
)
from ..storedjson import select_as_stored
from ..stream import BadStreamRequest, event_stream
from .base import (
    PROJECT_ID,
    RUN_JSON_FIELDS,
    parse_uuid,
    path_ids,
)
from .lists import LIST_PARAMETERS, RunListViewSet

#: One event of the stream, as an SSE parser reads it (its data is one line of JSON).
SSE_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["state", "log", "keepalive", "end", "stream-end"]},
        "data": {"type": "string", "description": "One line of JSON."},
        "id": {"type": "string", "pattern": "^[0-9]+\\.[0-9]+$"},
    },
}


@extend_schema(
    responses=TaskRunSerializer,
    parameters=path_ids(
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

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(response, Response) and isinstance(
            getattr(request, "accepted_renderer", None), StreamRenderer
        ):
            # A streamed media type was asked for (the log's, the events'); anything but the
            # stream itself (an error) is JSON.
            request.accepted_renderer, request.accepted_media_type = (
                TaskRunsJSONRenderer(),
                "application/json",
            )
        return super().finalize_response(request, response, *args, **kwargs)

    def check_reachable(self) -> None:
        if "pk" in self.kwargs:
            self.get_object()
        else:
            self.get_task()

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

    def offered_form(self, method: str, instance: TaskRun | None) -> dict[str, Any] | None:
        """The browsable API's forms (taskruns.browsable): a new run as the server would start
        it, a PATCH of the run's current values, its current output, a log entry to fill in."""
        if method == "POST" and self.action in ("list", "create"):
            defaults = TaskRunCreateSerializer().fields
            start = {name: defaults[name].default for name in ("environment", "status")}
            return {**start, "branch": None, "stage": None, "state": {}}
        if (
            method == "PATCH"
            and self.action in ("retrieve", "partial_update")
            and isinstance(instance, TaskRun)
        ):
            return run_patch_form(instance)
        # An action's page answers GET with 405, before DRF names the action: its route's methods
        # say which it is.
        routed = set(self.action_map.values())
        if method == "PATCH" and "set_output" in routed:
            try:
                output = self.get_object().output
            except APIException:  # the page is an error already (a 404)
                return None
            return {"output": {} if output is None else output}
        if method == "POST" and "append_log" in routed:
            return {"entries": [{"message": ""}]}
        return None

    def perform_create(self, serializer: Any, task: Task) -> TaskRun:
        return updates.create_run(task, actor=self.actor, **serializer.validated_data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        run = self.get_object()
        if if_none_match_hits(request.headers.get("If-None-Match"), run):
            return Response(status=304, headers={"ETag": etag_for(run)})
        return self.run_response(run)

    @extend_schema(request=TaskRunUpdateSerializer, responses=TaskRunSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Update the run, all or nothing, on its latest stored row. `status` follows the
        transition table (409 `invalid_transition`); `state` is shallow-merged after
        `state_remove_keys` are removed; `output` (an object) is shallow-merged, `null` clears it;
        `environment` only moves a cloud run to `local` (use `resume_in_cloud` for cloud).

        Also accepted, outside the `PatchedTaskRunUpdate` component (PostHog's newer agents send
        it): `state_append`, an object of state keys and one item each, applied after removal and
        merge in the same write: a list gets the item at its end, a missing or null key becomes
        `[item]`, any other value becomes `[value, item]`; keys named in
        `TASKRUNS["STATE_APPEND_UNIQUE_KEYS"]` do not get an item they already hold (equal as
        JSON). `If-Match` makes the write conditional on the run's version (412)."""
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
    @action(
        detail=True,
        methods=["get"],
        url_path="logs",
        url_name="logs",
        renderer_classes=[TaskRunsJSONRenderer, NDJSONRenderer],
    )
    def logs(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        """The run's log as newline-delimited JSON, oldest first (empty when there is none)."""
        run = self.get_object()
        entries = TaskRunLogEntry.objects.filter(run=run).order_by("id").values_list("entry", flat=True)
        lines = (
            json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
            for entry in entries.iterator()
        )
        return StreamingHttpResponse(lines, content_type="application/x-ndjson")

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "start",
                str,
                enum=["latest"],
                description="`latest`: skip the log written so far (state frames still start the stream).",
            ),
            OpenApiParameter(
                "Last-Event-ID",
                str,
                OpenApiParameter.HEADER,
                description="The `id` of the last frame received: resume exactly after it.",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                SSE_EVENT,
                description="Frames: `state` (the run, first and whenever its version moves), `log` "
                "(each entry, in order), `keepalive`, `end` (`rotated`: reconnect) and `stream-end` "
                "(the run finished). `id` of state and log frames: `<last log entry id>.<version>`.",
            ),
            204: OpenApiResponse(
                description="The run had finished at the `Last-Event-ID` sent: nothing follows."
            ),
        },
    )
    @action(
        detail=True,
        methods=["get"],
        renderer_classes=[TaskRunsJSONRenderer, EventStreamRenderer],
    )
    def stream(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        """The run live, as Server-Sent Events (design §13): its state and log as they change,
        resumable exactly once with `Last-Event-ID`."""
        run = self.get_object()
        try:
            return event_stream(request._request, run.pk)
        except BadStreamRequest as refused:
            raise ValidationError({refused.field: [refused.message]}, code=refused.code) from None

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
