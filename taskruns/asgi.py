"""``BodyLimit``: refuse an over-long request body under an ASGI server before Django reads it.

Under WSGI the app refuses a body by its declared length before reading it (taskruns.parsers).
Under ASGI that is too late: Django's ASGI handler reads the whole body into memory or a temporary
file before any view runs, whatever its size and whether or not its length was declared. Wrap the
ASGI application, so a body is refused as it arrives::

    # asgi.py
    from django.core.asgi import get_asgi_application
    from taskruns.asgi import BodyLimit

    application = BodyLimit(get_asgi_application(), prefix="/api/")

A declared ``Content-Length`` over ``TASKRUNS["MAX_REQUEST_BYTES"]`` is answered 413 at once; an
undeclared (chunked) body is counted as it arrives and refused the moment it passes the limit.
Anything within the limit is passed on unchanged (it is held in memory meanwhile, at most the
limit). Only paths under ``prefix`` are limited: a host's own routes keep their own rules.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    def __init__(self, app: ASGIApp, prefix: str = "/", limit: int | None = None) -> None:
        self.app, self.prefix, self.fixed_limit = app, prefix, limit

    @property
    def limit(self) -> int:
        if self.fixed_limit is not None:
            return self.fixed_limit
        from .conf import app_settings

        return int(app_settings.MAX_REQUEST_BYTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        limit = self.limit
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await refuse(send, limit)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: let the application see it
            size += len(message.get("body", b""))
            if size > limit:
                await refuse(send, limit)
                return
            if not message.get("more_body", False):
                break
        pending = iter(messages)

        async def replay() -> Message:
            return next(pending, None) or await receive()

        await self.app(scope, replay, send)


async def refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "type": "client_error",
            "errors": [
                {
                    "code": "request_too_large",
                    "detail": f"The request body is larger than {limit} bytes.",
                    "attr": None,
                }
            ],
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": 413, "headers": [*headers, (b"connection", b"close")]}
    )
    await send({"type": "http.response.body", "body": body})
