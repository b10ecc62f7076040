"""A client-side deadline on a request's database work (design §11).

A PostgreSQL server that stops answering while its kernel still acknowledges packets (a stopped
or swapped-out process, a hung storage layer) is caught by no TCP timeout and no server-side
``statement_timeout``: the worker would wait in ``recv()`` until its server kills it, and every
worker that touches the database the same way. So each request of the app's routes is watched:
when ``TASKRUNS["DATABASE_DEADLINE"]`` seconds pass before it ends, the sockets of its open
PostgreSQL connections are shut down. The blocked call returns at once with a connection error,
which the view answers as a 503 ``database_unavailable``; Django discards the broken
connection at the end of the request, and the next request connects anew.

One watchdog thread per process serves every request: watching costs a lock and a dictionary
entry, not a thread or a timer per request. A connection being opened is not a socket yet: the
database's ``connect_timeout`` (a libpq parameter, which poolers accept) bounds that, and the
system check taskruns.W006 asks for it.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections

logger = logging.getLogger(__name__)


class Watchdog:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._watched: dict[int, tuple[float, list[Any]]] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, seconds: float, wrappers: list[Any]) -> int:
        """Sever ``wrappers``' connections ``seconds`` from now unless ``release``d first."""
        with self._condition:
            token = next(self._tokens)
            idle = not self._watched
            self._watched[token] = (time.monotonic() + seconds, wrappers)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="taskruns-deadline", daemon=True)
                self._thread.start()
            elif idle:
                self._condition.notify()
        return token

    def release(self, token: int) -> None:
        # Under the same lock as the severing, so a released request's connection (which the
        # thread's next request may already be using) is never severed.
        with self._condition:
            self._watched.pop(token, None)

    def _run(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                expired = [token for token, (at, _wrappers) in self._watched.items() if at <= now]
                for token in expired:
                    _at, wrappers = self._watched.pop(token)
                    for wrapper in wrappers:
                        _sever(wrapper)
                upcoming = min((at for at, _wrappers in self._watched.values()), default=None)
                self._condition.wait(None if upcoming is None else upcoming - now)


def _sever(wrapper: Any) -> None:
    """Shut down the socket under ``wrapper``'s open connection, if any: a ``recv`` blocked on
    it in another thread returns, and libpq reports the connection lost."""
    raw = wrapper.connection
    if raw is None:
        return
    try:
        duplicate = socket.socket(fileno=os.dup(raw.fileno()))
    except (OSError, ValueError, AttributeError):
        return  # already closed
    with duplicate:
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        except OSError:
            return
    logger.warning("database work passed its deadline: connection %r severed", wrapper.alias)


_watchdog = Watchdog()


@contextmanager
def database_deadline(seconds: float | None) -> Iterator[None]:
    """Bound the PostgreSQL work done in this block, on this thread, by ``seconds`` (None: no bound)."""
    if seconds is None:
        yield
        return
    wrappers = [wrapper for wrapper in connections.all() if wrapper.vendor == "postgresql"]
    if not wrappers:
        yield
        return
    token = _watchdog.watch(seconds, wrappers)
    try:
        yield
    finally:
        _watchdog.release(token)
