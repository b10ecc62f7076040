"""Request rates on the app's routes (design §11): per API key, per user, and failed
authentications per client address, each a 429 with ``Retry-After`` past its rate.

DRF's ``SimpleRateThrottle`` does the counting (a sliding window of request times per key in a
cache); these classes only take their rates from ``TASKRUNS["THROTTLE_RATES"]`` and their cache
from ``TASKRUNS["THROTTLE_CACHE"]``, never from the host's ``REST_FRAMEWORK``, and prefix their
cache keys so they never share a count with the host's own throttles.

The cache must be one every server process shares (Redis, Memcached, or a file-based cache on a
single machine): a per-process memory cache gives each worker its own count, so N workers allow
N times the rate. The system check taskruns.W007 says so when the cache is per process.

Failed authentications are counted per ``REMOTE_ADDR`` (not ``X-Forwarded-For``, which any
client can set; behind a proxy, have it set ``REMOTE_ADDR``). An address past its rate gets 429
before its credentials are even checked, so guessing keys stops paying off.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from rest_framework.throttling import SimpleRateThrottle

from .conf import app_settings
from .models import ApiKey


class TaskRunsThrottle(SimpleRateThrottle):
    """DRF's rate throttle, with its rate and cache from ``TASKRUNS``."""

    cache_format = "taskruns_throttle_%(scope)s_%(ident)s"

    @property
    def cache(self) -> Any:  # type: ignore[override]  # DRF's is a class attribute, fixed at import
        return caches[app_settings.THROTTLE_CACHE]

    def get_rate(self) -> str | None:
        rate: str | None = app_settings.THROTTLE_RATES.get(self.scope)
        return rate

    def key_for(self, ident: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": ident}


class ApiKeyThrottle(TaskRunsThrottle):
    """Requests per API key (``THROTTLE_RATES["api_key"]``)."""

    scope = "api_key"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self.key_for(request.auth.pk) if isinstance(request.auth, ApiKey) else None


class UserThrottle(TaskRunsThrottle):
    """Requests per user, whichever of their keys or sessions sends them (``THROTTLE_RATES["user"]``)."""

    scope = "user"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        user = request.user
        return self.key_for(user.pk) if getattr(user, "is_authenticated", False) else None


class FailedAuthenticationThrottle(TaskRunsThrottle):
    """Failed authentications per client address (``THROTTLE_RATES["failed_authentication"]``):
    ``refused_for`` is asked before authenticating, ``record`` after a failure."""

    scope = "failed_authentication"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self.key_for(request.META.get("REMOTE_ADDR", ""))

    def refused_for(self, request: Any) -> float | None:
        """Seconds until this address may try again, or None if it may now (nothing recorded)."""
        if self.rate is None:
            return None
        most, duration = self.parse_rate(self.rate)
        assert most is not None and duration is not None
        self.key = self.get_cache_key(request, None)
        self.now = self.timer()
        self.history = [moment for moment in self.cache.get(self.key, []) if moment > self.now - duration]
        return self.wait() if len(self.history) >= most else None

    def record(self, request: Any) -> None:
        view: Any = None
        self.allow_request(request, view)  # counts the failure, unless the rate is None
