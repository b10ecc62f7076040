"""The errors the app raises, DRF exceptions with stable codes, and how its routes render them.

The app's routes render errors with ``TASKRUNS["EXCEPTION_HANDLER"]``, never with the host's
``REST_FRAMEWORK["EXCEPTION_HANDLER"]``: by default as ``{"type", "errors": [{"code",
"detail", "attr"}]}`` (design §10), so a client can always tell why. Conflicts additionally
carry ``extra``: facts a client needs to recover (the run's current status, the allowed
targets), which the app's views add to whatever body the handler produced.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_standardized_errors.formatter import ExceptionFormatter
from drf_standardized_errors.handler import ExceptionHandler
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response


class TaskRunsError(APIException):
    """Base class of the app's own API errors."""

    extra: dict[str, Any]

    def __init__(self, detail: Any = None, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail, code)
        self.extra = {"code": code or self.default_code, **extra}


class InvalidTransition(TaskRunsError):
    status_code = status.HTTP_409_CONFLICT
    default_detail = _("This status change is not allowed.")
    default_code = "invalid_transition"

    def __init__(self, current_status: str, target: str, allowed: list[str], field: str = "status") -> None:
        detail = _("Cannot change {field} of a run in status '{current}' to '{target}'.").format(
            field=field, current=current_status, target=target
        )
        super().__init__(detail, current_status=current_status, allowed_statuses=allowed)


class AlreadyActiveInCloud(TaskRunsError):
    status_code = status.HTTP_409_CONFLICT
    default_detail = _("Run is already active in cloud")
    default_code = "already_active_in_cloud"


class RunNotInProgress(TaskRunsError):
    """A heartbeat for a run that is not in progress: its executor must stop (design §12)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = _("The run is not in progress: its executor should stop.")
    default_code = "run_not_in_progress"

    def __init__(self, current_status: str) -> None:
        detail = _("The run is {current}, not in progress: its executor should stop.").format(
            current=current_status
        )
        super().__init__(detail, current_status=current_status)


class CloudStartFailed(TaskRunsError):
    status_code = status.HTTP_502_BAD_GATEWAY
    default_detail = _("Failed to start cloud workflow")
    default_code = "cloud_start_failed"


class LogFull(TaskRunsError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("This run's log is full.")
    default_code = "log_full"


class PreconditionFailed(TaskRunsError):
    """``If-Match`` named a version the run no longer has; carries the current run."""

    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = _("The run has changed since the version named in If-Match.")
    default_code = "precondition_failed"

    def __init__(self, run: Any) -> None:
        super().__init__(current_status=run.status, current_version=run.version)
        self.run = run


class RequestTooLarge(TaskRunsError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "request_too_large"


class LengthRequired(TaskRunsError):
    """A body sent without a declared length (``Transfer-Encoding: chunked``): refused, never
    read as empty (design §11)."""

    status_code = status.HTTP_411_LENGTH_REQUIRED
    default_detail = _("Send the body with a Content-Length header; chunked bodies are not accepted.")
    default_code = "length_required"


class StateTooLarge(TaskRunsError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The run's state would be larger than the limit after this change.")
    default_code = "state_too_large"


class OutputTooLarge(TaskRunsError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The run's output would be larger than the limit after this change.")
    default_code = "output_too_large"


class DatabaseUnavailable(TaskRunsError):
    """The database could not be reached, failed mid-request or passed the request's deadline
    (taskruns.deadline): retry later, nothing was kept."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = _("The database is unavailable; retry later.")
    default_code = "database_unavailable"
    #: Seconds a client should wait before retrying (the response's Retry-After).
    retry_after = 5


class RunBusy(DatabaseUnavailable):
    """Another session held the run's row lock past ``TASKRUNS["LOCK_TIMEOUT"]`` (taskruns.waits)."""

    default_detail = _("Another writer holds this run; retry shortly.")
    default_code = "run_busy"
    retry_after = 1


class DatabaseTimeout(DatabaseUnavailable):
    """A statement ran past ``TASKRUNS["STATEMENT_TIMEOUT"]`` and was cancelled (taskruns.waits)."""

    default_detail = _("The database took too long to answer; retry later.")
    default_code = "database_timeout"


def database_error(exc: Exception) -> DatabaseUnavailable:
    """The 503 a database error becomes, by its SQLSTATE (a lock or statement limit, or any
    other failure to reach or use the database)."""
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    if sqlstate == "55P03":  # lock_not_available: LOCK_TIMEOUT
        return RunBusy()
    if sqlstate == "57014":  # query_canceled: STATEMENT_TIMEOUT
        return DatabaseTimeout()
    return DatabaseUnavailable()


def exception_handler(exc: Exception, context: Any) -> Response | None:
    """The default ``TASKRUNS["EXCEPTION_HANDLER"]``: drf-standardized-errors' rendering
    (one entry per error, a field inside a list named like ``state_remove_keys.1``).

    Its handler and formatter classes are used directly, not the ones the package's own
    settings name, so a host that customises drf-standardized-errors for its own routes does not
    change the shape of the app's errors. A non-API exception under DEBUG is left to Django's
    debug page, as DRF's own handler does."""
    return _StandardErrors(exc, context).run()


class _StandardErrors(ExceptionHandler):
    def format_exception(self, exc: APIException) -> dict[str, Any]:
        formatted: dict[str, Any] = ExceptionFormatter(exc, self.context, self.exc).run()
        return formatted
