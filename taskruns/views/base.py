"""What every view of the app shares: its own authentication, permissions, errors, parsing,
rendering and pagination (never the host's REST_FRAMEWORK defaults), and scoping to the URL's
project."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter
from rest_framework import viewsets
from rest_framework.exceptions import AuthenticationFailed, NotFound, Throttled, ValidationError
from rest_framework.metadata import SimpleMetadata
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.request import Request

from ..access import visible_projects
from ..browsable import TaskRunsBrowsableAPIRenderer
from ..conf import app_settings
from ..deadline import database_deadline
from ..etags import etag_for
from ..exceptions import (
    DatabaseUnavailable,
    PreconditionFailed,
    RequestTooLarge,
    TaskRunsError,
    database_error,
)
from ..models import Project, Task
from ..negotiation import RememberedContentNegotiation
from ..openapi import TaskRunsAutoSchema
from ..parsers import TaskRunsJSONParser, check_body_length
from ..renderers import TaskRunsJSONRenderer
from ..serializers import (
    TaskRunSerializer,
)
from ..throttling import ApiKeyThrottle, FailedAuthenticationThrottle, UserThrottle

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
    renderer_classes = [TaskRunsJSONRenderer, TaskRunsBrowsableAPIRenderer]
    content_negotiation_class = RememberedContentNegotiation
    lookup_value_regex = "[^/]+"  # anything up to the next slash reaches the view and 404s as JSON
    pagination_class = TaskRunsPagination
    filter_backends: tuple[Any, ...] = ()
    throttle_classes = (ApiKeyThrottle, UserThrottle)
    versioning_class = None
    metadata_class = SimpleMetadata
    schema = TaskRunsAutoSchema()

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # The whole request, authentication included, under the database deadline.
        with database_deadline(app_settings.DATABASE_DEADLINE):
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        check_body_length(request)
        # An address that has failed to authenticate too often is refused before its
        # credentials are checked, so guessing keys gets no answer either way.
        wait = FailedAuthenticationThrottle().refused_for(request)
        if wait is not None:
            raise Throttled(wait)
        super().initial(request, *args, **kwargs)

    def options(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # Out-of-scope resources are a 404 on every method (design §2), OPTIONS too: its
        # metadata would otherwise confirm that the resource exists.
        self.check_reachable()
        return super().options(request, *args, **kwargs)

    def check_reachable(self) -> None:
        """Raise NotFound unless this request may see the URL's resource."""
        if "pk" in self.kwargs:
            self.get_object()
        else:
            self.get_project()

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
        if isinstance(exc, AuthenticationFailed):
            FailedAuthenticationThrottle().record(self.request)
        if isinstance(exc, RequestDataTooBig):
            # The host's DATA_UPLOAD_MAX_MEMORY_SIZE is below the app's own MAX_REQUEST_BYTES.
            exc = RequestTooLarge(limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        if isinstance(exc, OperationalError | InterfaceError):
            # The database went away, failed mid-request or hit a wait limit: nothing was kept
            # (a write is one statement or one transaction), so the client may retry. Not a 500.
            logger.warning("database unavailable: %s: %s", exc.__class__.__name__, exc)
            exc = database_error(exc)
        response = super().handle_exception(exc)
        if isinstance(exc, DatabaseUnavailable):
            response["Retry-After"] = str(exc.retry_after)
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


def path_ids(*ids: tuple[str, Any, str]) -> list[OpenApiParameter]:
    # The URL patterns accept anything up to the next slash (so a malformed id is a JSON 404),
    # which says nothing of the ids' types: they are declared here instead.
    return [OpenApiParameter(name, kind, OpenApiParameter.PATH, description=text) for name, kind, text in ids]


PROJECT_ID = ("project_id", int, "The project's id.")
