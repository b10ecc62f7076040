"""The demo's login views, throttled: failed logins per client address (design §11).

The admin's and the browsable API's login pages are the host's views, not the app's, so the
app's throttles never see them; the demo project wraps its own. A failed login (the form shown
again) counts; past ``RATE`` an address gets 429 with Retry-After, even for the right password,
until its window moves on. Counted with the app's failed-authentication throttle, in the same
shared cache.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from django.http import HttpResponse

from taskruns.throttling import FailedAuthenticationThrottle

RATE = "10/min"


class LoginFailures(FailedAuthenticationThrottle):
    scope = "demo_login"

    def get_rate(self) -> str:
        return RATE


def throttled_login(view: Any) -> Any:
    """``view`` (a login view), refusing POSTs from an address past its failed-login rate."""

    @functools.wraps(view)
    def login(request: Any, *args: Any, **kwargs: Any) -> Any:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        failures = LoginFailures()
        wait = failures.refused_for(request)
        if wait is not None:
            response = HttpResponse("Too many failed logins; try again later.\n", status=429)
            response["Content-Type"] = "text/plain; charset=utf-8"
            response["Retry-After"] = str(math.ceil(wait))
            return response
        response = view(request, *args, **kwargs)
        if response.status_code == 200:  # the form again: the credentials were refused
            failures.record(request)
        return response

    return login
