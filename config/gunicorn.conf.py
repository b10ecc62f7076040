"""gunicorn's settings for the demo project's API: ``gunicorn -c config/gunicorn.conf.py config.wsgi``.

Errors gunicorn answers itself, before Django sees the request (a malformed request line, a
header too large, a request it cannot parse), are HTML pages by default. A JSON API's clients
cannot read those, so they are answered here in the API's error shape instead:
``{"type": "client_error" | "server_error", "errors": [{"code", "detail", "attr"}]}``, with a code
derived from the reason (``bad_request``, ``request_header_fields_too_large``…).

gunicorn has no setting for its error pages: this replaces ``gunicorn.util.write_error``, the one
function its workers call to write them, when gunicorn loads this file (before it forks workers).
"""

import json
import re

from gunicorn import util

timeout = 30  # above TASKRUNS["DATABASE_DEADLINE"] (10 s), so a hung database ends as a 503 first


def write_json_error(sock, status_int, reason, mesg):
    code = re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_") or "error"
    body = json.dumps(
        {
            "type": "client_error" if status_int < 500 else "server_error",
            "errors": [{"code": code, "detail": mesg or reason, "attr": None}],
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


util.write_error = write_json_error
