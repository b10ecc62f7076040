"""The error responses in the schema: one component per status, in the shape the app's default
exception handler renders (design §10), naming the codes each status can carry.

The codes come from the exceptions themselves — the app's own (taskruns.exceptions, by their
``status_code``) and the DRF ones its views raise — so a new error class shows up in the schema
without being listed twice. 400's codes stay open (every field validator has its own); its
component lists the app's. A host that renders the app's errors with its own
``TASKRUNS["EXCEPTION_HANDLER"]`` gets the statuses documented with an open object body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import exceptions as drf

from .authentication import INVALID_API_KEY
from .conf import DEFAULTS, app_settings
from .exceptions import TaskRunsError


@dataclass(frozen=True)
class ErrorStatus:
    component: str
    description: str
    #: DRF's exceptions of this status the app's views raise (the app's own are found by status).
    raised: tuple[type[drf.APIException], ...] = ()
    extra_codes: tuple[str, ...] = ()
    #: Properties the app's views add next to the handler's body (TaskRunsError.extra) besides
    #: ``code``, which every status the app's own errors answer with carries.
    facts: dict[str, Any] = field(default_factory=dict)
    #: Whether any code may appear (validation errors: each field's validators have their own).
    open_codes: bool = False


CODE = {"type": "string", "description": "The error's code, as in `errors[0].code`."}
VALIDATION_CODES = (
    "`required`, `null`, `blank`, `invalid`, `invalid_choice`, `max_length`, `not_a_list`, `empty`, "
    "`min_value`, `max_value` (DRF's field codes) and the app's own: `not_an_object`, `protected_key`, "
    "`too_many_keys`, `too_deep`, `malformed_json`, `duplicate_key`, `not_utf8`, "
    "`number_out_of_range`, `unstorable_text`, `too_many_entries`, `entry_too_large`, "
    "`invalid_json_schema`, `unsupported_dialect`, `output_schema_mismatch`, `invalid_cursor`, "
    "`offset_too_large`, `not_with_changes_after`"
)

ERROR_STATUSES: dict[int, ErrorStatus] = {
    400: ErrorStatus(
        "ValidationErrorResponse",
        "Invalid input (a body, a filter value, a cursor, an offset): one entry per problem, `attr` "
        "naming the field (`state_remove_keys.1` inside a list). Codes include " + VALIDATION_CODES + ".",
        raised=(drf.ParseError,),
        open_codes=True,
    ),
    401: ErrorStatus(
        "UnauthorizedErrorResponse",
        "Missing or invalid credentials (unknown, revoked or expired key, inactive user), with "
        "`WWW-Authenticate: Bearer`.",
        raised=(drf.NotAuthenticated, drf.AuthenticationFailed),
        extra_codes=(INVALID_API_KEY,),
    ),
    403: ErrorStatus(
        "ForbiddenErrorResponse",
        "A browser session's unsafe request without its CSRF token (API keys need none).",
        raised=(drf.PermissionDenied,),
    ),
    404: ErrorStatus(
        "NotFoundErrorResponse",
        "No such resource, or not visible to this caller (existence is never revealed).",
        raised=(drf.NotFound,),
    ),
    409: ErrorStatus(
        "ConflictErrorResponse",
        "Refused by the run's current status: `current_status`, and for a transition the "
        "`allowed_statuses` it could move to.",
        facts={
            "current_status": {"type": "string"},
            "allowed_statuses": {"type": "array", "items": {"type": "string"}},
        },
    ),
    411: ErrorStatus(
        "LengthRequiredErrorResponse",
        "A body without a declared length (`Transfer-Encoding: chunked`): send `Content-Length`.",
    ),
    412: ErrorStatus(
        "PreconditionFailedErrorResponse",
        "`If-Match` names a version the run no longer has: the body carries the current `run` "
        "(and the response its `ETag`).",
        facts={
            "current_status": {"type": "string"},
            "current_version": {"type": "integer"},
            "run": {"$ref": "#/components/schemas/TaskRun"},
        },
    ),
    413: ErrorStatus(
        "TooLargeErrorResponse",
        "The body, or the run's state, output or log after this write, would pass its limit "
        "(`limit`, in bytes or entries).",
        facts={"limit": {"type": "integer"}, "limit_bytes": {"type": "integer"}},
    ),
    415: ErrorStatus(
        "UnsupportedMediaTypeErrorResponse",
        "The body is not `application/json`.",
        raised=(drf.UnsupportedMediaType,),
    ),
    429: ErrorStatus(
        "ThrottledErrorResponse",
        "Too many requests from this key, user or address: retry after `Retry-After` seconds.",
        raised=(drf.Throttled,),
    ),
    502: ErrorStatus(
        "CloudStartFailedErrorResponse",
        "The cloud worker could not be started; nothing was changed.",
    ),
    503: ErrorStatus(
        "UnavailableErrorResponse",
        "The database is unavailable or timed out, or another writer holds the run (`run_busy`): "
        "nothing was changed; retry after `Retry-After` seconds.",
    ),
}


def error_codes(status: int) -> list[str]:
    """Every code an error of ``status`` can carry on the app's routes (400: the non-field ones)."""
    spec = ERROR_STATUSES[status]
    codes = set(_app_codes(status))
    codes |= {str(cls.default_code) for cls in spec.raised} | set(spec.extra_codes)
    return sorted(codes)


def _app_codes(status: int) -> list[str]:
    return [cls.default_code for cls in _app_errors() if cls.status_code == status]


def renders_own_errors() -> bool:
    """Whether the app's routes render errors with its default handler, the shape documented
    here (else a host's TASKRUNS["EXCEPTION_HANDLER"] decides it)."""
    return bool(app_settings.EXCEPTION_HANDLER == DEFAULTS["EXCEPTION_HANDLER"])


def _app_errors() -> list[type[TaskRunsError]]:
    found, pending = [], [TaskRunsError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def error_response(status: int, registry: Any) -> dict[str, Any]:
    """The ``responses`` entry of an error status, its component registered on first use."""
    spec = ERROR_STATUSES[status]
    if not renders_own_errors():
        schema: dict[str, Any] = {"type": "object", "additionalProperties": {}}
    else:
        component = ResolvedComponent(  # type: ignore[no-untyped-call]
            name=spec.component,
            type=ResolvedComponent.SCHEMA,
            object=spec.component,
            schema=_body(status, spec),
        )
        registry.register_on_missing(component)
        schema = component.ref
    return {"description": spec.description, "content": {"application/json": {"schema": schema}}}


def _body(status: int, spec: ErrorStatus) -> dict[str, Any]:
    code: dict[str, Any] = {"type": "string"}
    if not spec.open_codes:
        code["enum"] = error_codes(status)
    if status >= 500:
        kinds = ["server_error"]
    else:
        kinds = ["validation_error", "client_error"] if status == 400 else ["client_error"]
    facts = {"code": CODE, **spec.facts} if _app_codes(status) else spec.facts
    entry = {
        "type": "object",
        "required": ["code", "detail", "attr"],
        "properties": {
            "code": code,
            "detail": {"type": "string", "description": "What went wrong, for a person."},
            "attr": {
                "type": "string",
                "nullable": True,
                "description": "The field in error (`state_remove_keys.1` inside a list), or null.",
            },
        },
    }
    return {
        "type": "object",
        "description": spec.description,
        "required": ["type", "errors"],
        "properties": {
            # Wrapped, so that drf-spectacular's enum hook leaves it inline: as a top-level
            # enum it would become a schema-wide `TypeEnum` colliding with a host's own.
            "type": {"allOf": [{"type": "string", "enum": kinds}]},
            "errors": {"type": "array", "minItems": 1, "items": entry},
            **facts,
        },
    }
