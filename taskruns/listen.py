"""One listening connection per server process, shared by every stream it serves (design §13).

On PostgreSQL a trigger (migration 0012) sends ``NOTIFY taskruns_run, '<run id>'`` inside every
transaction that moves a run's version or adds to its log; PostgreSQL delivers it only when that
transaction commits — the same point at which the app's signals fire (``on_commit``) — so nothing
is announced that did not commit. The hub keeps one ``LISTEN`` connection (psycopg's async
connection, on ``TASKRUNS["STREAM_LISTEN_DSN"]`` or the runs database's own settings: never through
a transaction-mode pooler, which cannot hold a ``LISTEN``) and wakes the streams of the run named.
If it cannot listen (SQLite, or the server is down), ``listening`` is False and the streams poll;
after a reconnect every stream is woken once, to catch up on what it may have missed.

Streams read in the hub's small thread pool (``TASKRUNS["STREAM_READ_THREADS"]``), each thread
with its own persistent connection: an idle stream holds no connection, and a process holds at most
that many for all its streams, plus the one listening.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import DatabaseError, connections

from . import rows
from .conf import app_settings
from .models import TaskRun

logger = logging.getLogger(__name__)

CHANNEL = "taskruns_run"
#: OPTIONS of Django's PostgreSQL backend that are not libpq connection parameters.
NOT_LIBPQ = {
    "prepare_threshold",
    "pool",
    "server_side_binding",
    "isolation_level",
    "assume_role",
    "cursor_factory",
}
T = TypeVar("T")


class Hub:
    def __init__(self) -> None:
        self.subscribers: dict[str, set[asyncio.Event]] = {}
        # Notifications seen, per run and for all runs: a read is shared only by streams that
        # asked for it after the same notifications (read_batch).
        self.generations: dict[str, int] = {}
        self.everything = 0
        self.in_flight: dict[tuple[Any, ...], asyncio.Future[Any]] = {}
        self.listening = False
        self.task: asyncio.Task[None] | None = None
        self.pool = ThreadPoolExecutor(
            max_workers=app_settings.STREAM_READ_THREADS, thread_name_prefix="taskruns-stream"
        )

    def subscribe(self, run_id: Any) -> asyncio.Event:
        if self.task is None and connections[rows.database_of(TaskRun)].vendor == "postgresql":
            self.task = asyncio.get_running_loop().create_task(self._listen())
        event = asyncio.Event()
        self.subscribers.setdefault(str(run_id), set()).add(event)
        return event

    def unsubscribe(self, run_id: Any, event: asyncio.Event) -> None:
        waiting = self.subscribers.get(str(run_id))
        if waiting is not None:
            waiting.discard(event)
            if not waiting:
                del self.subscribers[str(run_id)]
                self.generations.pop(str(run_id), None)

    async def read_batch(self, run_id: Any, position: Any, with_state: bool) -> Any:
        """taskruns.stream.read_batch, read once for all the streams of a run that ask for the
        same position after the same notifications (one read, not one per listener, when a
        write wakes a crowd watching one run). A stream woken by a later notification never
        joins a read that started before it: the key holds the notifications seen."""
        from .stream import read_batch

        if not app_settings.STREAM_SHARED_READS:
            return await self.read(read_batch, run_id, position, with_state)
        key = (str(run_id), position, with_state, self.everything, self.generations.get(str(run_id), 0))
        shared = self.in_flight.get(key)
        if shared is None:
            shared = asyncio.ensure_future(self.read(read_batch, run_id, position, with_state))
            self.in_flight[key] = shared
            shared.add_done_callback(lambda _done: self.in_flight.pop(key, None))
        return await asyncio.shield(shared)

    async def read(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the pool, whose threads keep their connections between reads."""
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, functools.partial(_read, function, args)
        )

    def wake(self, run_id: str | None = None) -> None:
        if run_id:
            if run_id in self.subscribers:
                self.generations[run_id] = self.generations.get(run_id, 0) + 1
        else:
            self.everything += 1
        events = self.subscribers.get(run_id, set()) if run_id else set().union(*self.subscribers.values())
        for event in events:
            event.set()

    async def _listen(self) -> None:
        import psycopg

        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(listen_dsn(), autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening, delay = True, 0.5
                    self.wake()  # anything missed while not listening
                    async for notification in conn.notifies():
                        self.wake(notification.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server went away: poll meanwhile, then listen again
                logger.warning("stream listener: %s: %s", exc.__class__.__name__, exc)
            if self.listening:  # lost: every stream reads once more, then polls until relistening
                self.listening = False
                self.wake()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)


def _read(function: Callable[..., T], args: tuple[Any, ...]) -> T:
    try:
        return function(*args)
    except DatabaseError:
        connections[rows.database_of(TaskRun)].close()  # a broken connection is not reused
        raise


def listen_dsn() -> str:
    """The connection string the hub listens on: ``STREAM_LISTEN_DSN``, or the runs database's."""
    if app_settings.STREAM_LISTEN_DSN:
        return str(app_settings.STREAM_LISTEN_DSN)
    from psycopg.conninfo import make_conninfo

    settings = connections[rows.database_of(TaskRun)].settings_dict
    options = {key: value for key, value in settings.get("OPTIONS", {}).items() if key not in NOT_LIBPQ}
    parts = {"dbname": settings["NAME"], "user": settings["USER"], "password": settings["PASSWORD"]}
    parts |= {"host": settings["HOST"], "port": settings["PORT"]}
    return make_conninfo(
        **{key: value for key, value in {**parts, **options}.items() if value not in ("", None)}
    )


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def hub() -> Hub:
    """This event loop's hub (one per server process: an ASGI server runs one loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = Hub()
    return _hubs[loop]
