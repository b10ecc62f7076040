"""Run lists (design §14): a task's and a whole project's, with filters (taskruns.filters),
limit/offset or cursor pages, and the change feed (taskruns.feed)."""

from __future__ import annotations

from typing import Any, cast

from django.db.models import F
from django.utils.translation import gettext_lazy as _
from django_filters.utils import translate_validation
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from .. import feed
from ..filters import ProjectRunFilterSet, RunFilterBackend, RunFilterSet
from ..models import TaskRun
from ..serializers import (
    TaskRunSerializer,
    run_list_answer,
)
from ..storedjson import adopt_stored, select_as_stored
from .base import (
    PROJECT_ID,
    RUN_JSON_FIELDS,
    ProjectScopedViewSet,
    RunCursorPagination,
    TaskRunsPagination,
    path_ids,
)

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


@extend_schema(parameters=path_ids(PROJECT_ID))
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
