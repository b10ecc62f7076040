"""What each operation of the API says about itself in the schema (Swagger UI, Redoc, generated
clients): the rules a client needs, in one place, each operation pointing at the README section
that says more.

The view docstrings are for the code's readers; these texts are for the API's. The transition
table is rendered from the table in force (taskruns.transitions), so a host's own table is the
one its schema shows.
"""

from __future__ import annotations

from .models import TaskRunStatus
from .transitions import is_allowed

#: README sections the descriptions point at (tests/test_schema.py checks each one exists).
SECTIONS = {
    "access": "Access",
    "fields": "Run fields",
    "patch": "PATCH rules",
    "transitions": "Status transitions",
    "etags": "ETags and preconditions",
    "resume": "`resume_in_cloud`",
    "set_output": "`set_output`",
    "append_log": "`append_log`",
    "logs": "`logs`",
    "events": "`events`",
    "lists": "Run lists, filters and the change feed",
    "lifecycle": "Run lifecycle: cancel, heartbeats, stale runs",
    "stream": "Live stream",
    "limits": "Hostile input, isolation and failures",
}


def see(*sections: str) -> str:
    names = ", ".join(f"“{SECTIONS[section]}”" for section in sections)
    return f"\n\nMore in the taskruns README: {names}."


def transition_markdown() -> str:
    """The transition table in force, as a Markdown table (✓ allowed, = no-op, ✗ 409)."""
    statuses = list(TaskRunStatus.values)
    lines = ["| from \\ to | " + " | ".join(statuses) + " |", "|---" * (len(statuses) + 1) + "|"]
    for source in statuses:
        marks = [
            "=" if target == source else "✓" if is_allowed(source, target) else "✗" for target in statuses
        ]
        lines.append(f"| {source} | " + " | ".join(marks) + " |")
    return "\n".join(lines)


WRITE_ERRORS = (
    'Refused writes change nothing. `If-Match: "<version>"` (the run\'s `ETag`) makes the write '
    "conditional: 412 `precondition_failed` with the current `run` when it moved on."
)

PATCH_RULES = """Update the run, all or nothing, on its latest stored row (concurrent writers never \
lose each other's keys). Every field is optional; unknown fields are ignored; the answer is the \
whole run, with `version` one higher.

| field | rule |
|---|---|
| `status` | one of the six statuses (400 `invalid_choice`); moves follow the table below, else 409 \
`invalid_transition` with `current_status` and `allowed_statuses` |
| `branch`, `stage` | string or null; blank → 400 `blank`; too long → 400 `max_length` |
| `error_message` | string or null |
| `output` | an object is shallow-merged into the stored output; `null` clears it; any other JSON \
value replaces it |
| `state` | an object (else 400 `not_an_object`), shallow-merged into the state |
| `state_remove_keys` | non-empty list of key names, removed **before** `state` is merged; absent \
keys are a no-op |
| `environment` | only `local`: hands a cloud run to a local machine (no-op on a local run); \
`cloud` → 400 `invalid_choice` — use `resume_in_cloud` |
| `state_append` | (outside the `PatchedTaskRunUpdate` component; PostHog's newer agents send it) \
an object of state keys and one item each, applied **after** removal and merge: a list gets the \
item at its end, a missing or `null` key becomes `[item]`, any other value `[value, item]`; a \
list item is one item; keys in `TASKRUNS["STATE_APPEND_UNIQUE_KEYS"]` do not get an item they \
already hold (compared as JSON) |

Keys in `TASKRUNS["PROTECTED_STATE_KEYS"]` may not be written or removed (400 `protected_key`). \
Limits: `MAX_STATE_KEYS_PER_PATCH` (400 `too_many_keys`), merged state `MAX_STATE_BYTES` \
(413 `state_too_large`), merged output `MAX_OUTPUT_BYTES` (413 `output_too_large`), JSON depth \
(400 `too_deep`).

Status transitions in force (terminal runs keep their data fields writable; their status and \
environment are final, the one way out is `resume_in_cloud`):

"""

DESCRIPTIONS: dict[str, str] = {
    "projects_list": "The projects you can see (the API root lists the same), oldest first, with "
    "the addresses of each one's tasks and runs. Limit/offset pages." + see("access"),
    "tasks_list": "The project's tasks, newest first; deleted tasks are not listed. Limit/offset "
    "pages of 50 (at most 100). An unknown or hidden project is a 404." + see("access"),
    "tasks_create": "Create a task. `title` is required (not blank, at most 255 characters); "
    "`description` and `repository` are optional. `json_schema`, when given, is the JSON Schema "
    "every run's output must match (`set_output`): it is checked on write — a valid schema of a "
    "built-in draft (400 `invalid_json_schema`, `unsupported_dialect`), `$ref` only within itself "
    "(nothing is ever fetched), patterns the linear-time engine can run." + see("set_output", "limits"),
    "tasks_retrieve": "One task of the project." + see("access"),
    "tasks_partial_update": "Change a task's title, description, repository or JSON Schema (checked "
    "as on creation)." + see("set_output"),
    "tasks_destroy": "Delete the task softly: it disappears (404 on every route under it), its runs "
    "are kept in the database and the change feed reports each of them once more, as deleted." + see("lists"),
    "tasks_runs_list": "The task's runs, newest first unless `ordering` says otherwise, filtered "
    "(`status`, `environment`, `stage`, created and updated times, `stale`); limit/offset pages by default, "
    "cursor pages with `?cursor=`, the change feed with `?changes_after=`. An unknown filter value "
    "is a 400." + see("lists"),
    "runs_list": "The project's runs across its live tasks, with the same filters, pages and change "
    "feed as a task's run list, and `task` to keep one task's runs." + see("lists"),
    "tasks_runs_create": "Start a run of the task. `environment` `local` (default) or `cloud`; "
    "`status` `queued` (default) or `not_started`; `heartbeat_timeout` in seconds (1 … 7 days) or "
    "null for never, left out for the server's default; `branch` and `stage` as in a PATCH; an "
    "initial `state` object under a PATCH's rules (protected keys, key count, size). The run gets "
    "`version` 1 and a `created` history event." + see("fields", "lifecycle"),
    "tasks_runs_retrieve": 'The run. Its `ETag` names its version (`"7"`, or `"7-log"` once it '
    "has a log); `If-None-Match` with the current tag answers 304. While `cancel_requested_at` is "
    "set on an `in_progress` run, its executor should stop." + see("fields", "etags"),
    "tasks_runs_resume_in_cloud_create": "Move the run into cloud as `queued` and start its cloud "
    "worker, from any status (terminal ones included): `completed_at` and `error_message` are "
    'cleared and `TASKRUNS["RESUME_CLEAR_STATE_KEYS"]` removed from the state. A run already active '
    "in cloud (`cloud` and `queued` or `in_progress`) is 409 `already_active_in_cloud`. If the "
    "worker cannot be started nothing is written: 502 `cloud_start_failed`. " + WRITE_ERRORS + see("resume"),
    "tasks_runs_set_output_partial_update": "Replace the run's output (`output` is required; any JSON "
    "value). When the task has a `json_schema` the output must match it (400 "
    "`output_schema_mismatch`, naming the failing path) and a valid output moves a run that has not "
    "finished to `completed`. Merged-output limit: 413 `output_too_large`. "
    + WRITE_ERRORS
    + see("set_output"),
    "tasks_runs_append_log_create": "Append entries (JSON objects) to the run's log, in order, each "
    "stored with the server's arrival time. The run's `version` does not change; its `log_url` "
    "appears with the first entry. Limits: entries per call (400 `too_many_entries`), bytes per "
    "entry (400 `entry_too_large`), entries and bytes per run (413 `log_full`); an empty list is 400 "
    "`empty`." + see("append_log"),
    "tasks_runs_logs_retrieve": "The run's log as newline-delimited JSON (`application/x-ndjson`), "
    "oldest first, each entry exactly as sent; an empty body when there is none. For a log that "
    "is still growing, read the stream." + see("logs", "stream"),
    "tasks_runs_events_list": "The run's history, oldest first: one event per creation, status "
    "change, environment change, resume in cloud, `set_output`, cancel request and reaping, with "
    "the state keys the same write set and removed, who did it (`user`, `api_key` prefix) and how "
    "(`via`). A PATCH that only changes data fields adds no event." + see("events"),
    "tasks_runs_cancel_create": "Cancel the run cooperatively. A run no executor has yet "
    "(`not_started`, `queued`) is `cancelled` at once (200). An `in_progress` run gets "
    "`cancel_requested_at` (202): its executor learns it from its heartbeat, a GET or the stream, "
    "stops and writes a terminal status. A finished run is left as it is (200); repeating a cancel "
    "is harmless. `reason` (optional, at most 500 characters) goes into the history. "
    + WRITE_ERRORS
    + see("lifecycle"),
    "tasks_runs_heartbeat_create": "The executor of an `in_progress` run says it is alive (no body). "
    "The answer says whether to stop (`cancel_requested`). On a run in any other status the answer "
    "is 409 `run_not_in_progress`: the executor must stop. A run silent for longer than its "
    "`heartbeat_timeout` is failed by the server (`error_code` `heartbeat_timeout`). Changes neither "
    "the run's version nor its `updated_at`." + see("lifecycle"),
    "tasks_runs_stream_retrieve": "The run live, as Server-Sent Events: a `state` frame first and "
    "whenever its version moves, a `log` frame per entry in order, `keepalive` frames, `end` "
    "(`rotated`: reconnect) and `stream-end` after the final state of a finished run. Each state "
    "and log frame's `id` is `<last log entry id>.<version>`: reconnecting with `Last-Event-ID` "
    "resumes exactly after it, nothing lost or repeated; 204 once the run had finished there. "
    "`?start=latest` skips the log written so far." + see("stream"),
}


#: Each operation's title in Swagger UI's list and Redoc's menu (otherwise its operation id).
SUMMARIES: dict[str, str] = {
    "projects_list": "The projects you can see",
    "tasks_list": "List a project's tasks",
    "tasks_create": "Create a task",
    "tasks_retrieve": "Read a task",
    "tasks_partial_update": "Change a task",
    "tasks_destroy": "Delete a task (softly)",
    "tasks_runs_list": "List a task's runs",
    "runs_list": "List a project's runs",
    "tasks_runs_create": "Start a run",
    "tasks_runs_retrieve": "Read a run",
    "tasks_runs_partial_update": "Update a run (PatchedTaskRunUpdate)",
    "tasks_runs_resume_in_cloud_create": "Resume a run in cloud",
    "tasks_runs_set_output_partial_update": "Set a run's output",
    "tasks_runs_append_log_create": "Append to a run's log",
    "tasks_runs_logs_retrieve": "Read a run's log",
    "tasks_runs_events_list": "Read a run's history",
    "tasks_runs_cancel_create": "Cancel a run",
    "tasks_runs_heartbeat_create": "Send a heartbeat",
    "tasks_runs_stream_retrieve": "Watch a run live (Server-Sent Events)",
}


def describe(operation_id: str) -> str | None:
    """The description of an operation, or None to keep drf-spectacular's own."""
    if operation_id == "tasks_runs_partial_update":
        return (
            PATCH_RULES + transition_markdown() + "\n\n" + WRITE_ERRORS + see("patch", "transitions", "etags")
        )
    return DESCRIPTIONS.get(operation_id)
