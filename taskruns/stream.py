"""The live run stream (design §13): Server-Sent Events of a run's state and log, resumable
exactly once.

Every ``state`` and ``log`` frame carries the stream's position as its ``id``: ``<log>.<version>``,
the id of the last log entry delivered and the last state version delivered. One
``Last-Event-ID`` therefore resumes both: entries are sent by increasing id after ``<log>`` —
appends to a run are serialised by its row lock (taskruns.updates.append_log), so a run's entry
ids grow in commit order and none can appear later below one already read — and a state frame is
sent only when the stored version is past ``<version>``. Versions seen are strictly increasing and
the last one is the stored one; intermediate versions may be folded into the newest.

Nothing here waits or holds a connection: ``read_batch`` is one short read (the run, then a page
of its log), and the drivers decide when to read again — ``frames_async`` under ASGI, woken by
PostgreSQL's notifications (taskruns.listen), ``frames_sync`` under WSGI, polling for a bounded
time so that a worker is never held for ever.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.translation import gettext_lazy as _

from .conf import app_settings
from .deadline import database_deadline
from .models import TaskRun, TaskRunLogEntry
from .transitions import is_terminal

#: Log entries read (and sent) per read: a long backlog is replayed in pages, never in one query.
PAGE = 500
#: The run's fields in a state frame.
STATE_FIELDS = (
    "status",
    "stage",
    "branch",
    "output",
    "error_message",
    "environment",
    "version",
    "updated_at",
    "completed_at",
    "cancel_requested_at",
)


@dataclass(frozen=True)
class Position:
    """Where a client is in a run's stream: the last log entry id and state version it got."""

    log_id: int = 0
    version: int = 0

    @property
    def event_id(self) -> str:
        return f"{self.log_id}.{self.version}"

    @classmethod
    def parse(cls, value: str) -> Position | None:
        """The position a ``Last-Event-ID`` names, or None when it is not one this stream gave."""
        log_id, dot, version = value.strip().partition(".")
        parts = (log_id, version)
        if not dot or not all(part.isascii() and part.isdigit() and len(part) <= 19 for part in parts):
            return None
        return cls(int(log_id), int(version))


@dataclass(frozen=True)
class Batch:
    """One read's frames, the position after them, and what to do next."""

    frames: list[str]
    position: Position
    more: bool  # a full page of log: read again at once
    final_status: str | None  # the run is terminal and everything is sent: end the stream
    gone: bool = False  # the run no longer exists (or its task was deleted)


def frame(event: str, data: Any, event_id: str | None = None) -> str:
    """One SSE frame. The data is one line of JSON, so it needs no ``data:`` continuation."""
    text = json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":"))
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {text}\n\n"


def state_of(run: dict[str, Any]) -> dict[str, Any]:
    """A state frame's data: the run's ids and the fields read (STATE_FIELDS, maybe its state)."""
    fields = {name: value for name, value in run.items() if name not in ("id", "task_id")}
    return {"run_id": str(run["id"]), "task_id": str(run["task_id"]), **fields}


def latest_log_id(run_id: Any) -> int:
    last = TaskRunLogEntry.objects.filter(run_id=run_id).order_by("-id").values_list("id", flat=True).first()
    return int(last or 0)


def read_batch(run_id: Any, position: Position, with_state: bool = False) -> Batch:
    """The frames a client at ``position`` has not had yet: a state frame if the version moved,
    then up to a page of log entries; and whether the stream is over. ``with_state`` adds the
    run's ``state`` to state frames (the admin's live page shows it)."""
    fields = (*STATE_FIELDS, "state") if with_state else STATE_FIELDS
    run = (
        TaskRun.objects.filter(pk=run_id, task__deleted_at__isnull=True)
        .values("id", "task_id", *fields)
        .first()
    )
    if run is None:
        return Batch([], position, more=False, final_status=None, gone=True)
    frames = []
    if run["version"] > position.version:
        position = Position(position.log_id, run["version"])
        frames.append(frame("state", state_of(run), position.event_id))
    entries = list(
        TaskRunLogEntry.objects.filter(run_id=run_id, id__gt=position.log_id)
        .order_by("id")
        .values_list("id", "entry")[:PAGE]
    )
    for entry_id, entry in entries:
        position = Position(entry_id, position.version)
        frames.append(frame("log", entry, position.event_id))
    more = len(entries) == PAGE
    final = run["status"] if is_terminal(run["status"]) and not more else None
    return Batch(frames, position, more=more, final_status=final)


def finished_before(run_id: Any, position: Position) -> bool:
    """Whether a client reconnecting at ``position`` already has the end of a finished run
    (answered 204, which stops a browser's EventSource from reconnecting)."""
    batch = read_batch(run_id, position)
    return batch.final_status is not None and not batch.frames


def delivery(batch: Batch) -> tuple[list[str], bool]:
    """What to send after a read, and whether the stream ends with it: the run is gone, or it
    finished and everything has been sent (``stream-end``, with the position so far as its id)."""
    if batch.gone:
        return [*batch.frames, GONE], True
    if batch.final_status is not None:
        end = frame("stream-end", {"status": batch.final_status}, batch.position.event_id)
        return [*batch.frames, end], True
    return batch.frames, False


ROTATED = frame("end", {"type": "rotated"})
KEEPALIVE = frame("keepalive", {})
GONE = frame("end", {"type": "gone"})


def frames_sync(run_id: Any, position: Position, with_state: bool = False) -> Iterator[str]:
    """The stream under WSGI: polls every ``STREAM_POLL_SECONDS`` and rotates after
    ``STREAM_WSGI_MAX_SECONDS`` at most, so a sync worker is never held longer than that."""
    limit = min(app_settings.STREAM_MAX_SECONDS, app_settings.STREAM_WSGI_MAX_SECONDS)
    started = last_sent = time.monotonic()
    while True:
        with database_deadline(app_settings.DATABASE_DEADLINE):
            batch = read_batch(run_id, position, with_state)
        position = batch.position
        frames, over = delivery(batch)
        yield from frames
        if over:
            return
        now = time.monotonic()
        if frames:
            last_sent = now
        if batch.more:
            continue
        if now - started >= limit:
            yield ROTATED
            return
        if now - last_sent >= app_settings.STREAM_KEEPALIVE_SECONDS:
            yield KEEPALIVE
            last_sent = now
        time.sleep(min(app_settings.STREAM_POLL_SECONDS, max(0.0, limit - (now - started))))


async def frames_async(run_id: Any, position: Position, with_state: bool = False) -> AsyncIterator[str]:
    """The stream under ASGI: reads in the listener's thread pool (no connection is held while
    waiting), woken by the run's notifications, or every ``STREAM_POLL_SECONDS`` while the
    process is not listening (SQLite, or PostgreSQL unreachable)."""
    from .listen import hub

    listener = hub()
    subscription = listener.subscribe(run_id)
    limit = app_settings.STREAM_MAX_SECONDS
    keepalive = app_settings.STREAM_KEEPALIVE_SECONDS
    loop = asyncio.get_running_loop()
    started = last_sent = loop.time()
    try:
        while True:
            subscription.clear()  # set again by any notification from here on
            batch = await listener.read_batch(run_id, position, with_state)
            read_at = loop.time()
            position = batch.position
            frames, over = delivery(batch)
            for text in frames:
                yield text
            if over:
                return
            if frames:
                last_sent = loop.time()
            if batch.more:
                continue
            # Wait to be woken (then read again), sending keepalives meanwhile; while the process
            # is not listening, read again every STREAM_POLL_SECONDS instead.
            while True:
                now = loop.time()
                if now - started >= limit:
                    yield ROTATED
                    return
                if now - last_sent >= keepalive:
                    yield KEEPALIVE
                    last_sent = now
                polling = not listener.listening
                poll_due = app_settings.STREAM_POLL_SECONDS - (now - read_at)
                if polling and poll_due <= 0:
                    break
                wait = min(limit - (now - started), keepalive - (now - last_sent))
                if polling:
                    wait = min(wait, poll_due)
                try:
                    await asyncio.wait_for(subscription.wait(), max(wait, 0.0))
                    break
                except TimeoutError:
                    pass
    finally:
        listener.unsubscribe(run_id, subscription)


class BadStreamRequest(ValueError):
    """A stream request naming a position or start this stream cannot take (a 400)."""

    def __init__(self, field: str, code: str, message: Any) -> None:
        super().__init__(message)
        self.field, self.code, self.message = field, code, message


def event_stream(
    request: HttpRequest, run_id: Any, with_state: bool = False
) -> HttpResponse | StreamingHttpResponse:
    """The response to a stream request for a run the caller may see: 204 for a reconnect to a
    finished stream, else the frames from where ``Last-Event-ID`` (or ``?start=latest``) says.
    Raises BadStreamRequest for a ``Last-Event-ID`` or ``start`` it cannot take."""
    resume = request.headers.get("Last-Event-ID")
    if resume:
        position = Position.parse(resume)
        if position is None:
            message = _("Not an event id of this stream.")
            raise BadStreamRequest("Last-Event-ID", "invalid_last_event_id", message)
        if finished_before(run_id, position):
            return HttpResponse(status=204)
    else:
        start = request.GET.get("start")
        if start not in (None, "latest"):
            raise BadStreamRequest("start", "invalid_choice", _("Only 'latest' is accepted."))
        position = Position(latest_log_id(run_id) if start == "latest" else 0, 0)
    if isinstance(request, ASGIRequest):
        # Everything the stream reads from now on is read in the listener's pool: the request's
        # own connection is not held for the stream's life.
        for connection in connections.all(initialized_only=True):
            connection.close()
        content: Any = frames_async(run_id, position, with_state)
    else:
        content = frames_sync(run_id, position, with_state)
    response = StreamingHttpResponse(content, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy must pass frames on as they come
    return response
