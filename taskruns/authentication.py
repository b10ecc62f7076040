"""``Authorization: Bearer <key>`` authentication for DRF, backed by taskruns.keys."""

from __future__ import annotations

import time
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from .keys import PREFIX_LENGTH, accepts, find_active_key
from .models import ApiKey

# How stale `last_used_at` may get before a request refreshes it: one write per key per
# interval instead of one per request.
LAST_USED_RESOLUTION = timedelta(minutes=5)
# The last recorded use of each key this process has seen (written or read): prefix →
# time.monotonic() of that use. Bounded: when full it starts again, at one write a key at most.
_RECORDED_USES: dict[str, float] = {}
_RECORDED_USES_MAX = 4096


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticates ``Authorization: Bearer <key>``; ``request.auth`` is the ApiKey.

    Put it first in DEFAULT_AUTHENTICATION_CLASSES so that unauthenticated requests get 401
    with ``WWW-Authenticate: Bearer`` (DRF takes the header from the first class).
    """

    keyword = "Bearer"

    def presented_key(self, request) -> str | None:
        """The key of the request's Bearer header, not yet checked; None without such a header.
        Raises AuthenticationFailed for a malformed one."""
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                _("Invalid Authorization header: expected 'Bearer <key>'."),
                code="invalid_authorization_header",
            )
        try:
            return parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid API key."), code="invalid_api_key") from None

    def authenticate(self, request):
        raw_key = self.presented_key(request)
        if raw_key is None:
            return None
        api_key = find_active_key(raw_key)
        if not accepts(api_key):
            raise exceptions.AuthenticationFailed(_("Invalid API key."), code="invalid_api_key")
        _touch(api_key)
        return api_key.user, api_key

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'


def _touch(api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    _remember_use(api_key.prefix, age=now - api_key.last_used_at)


def record_checked_use(raw_key: str) -> None:
    """Refresh ``last_used_at`` of a key that a statement accepted by itself, without a lookup
    (taskruns.access.RunScope): as _touch does, at most once per LAST_USED_RESOLUTION. The row
    was not read, so this process goes by the uses it has seen recorded, and the UPDATE's
    condition skips the write when another process has made it. (By prefix alone: the
    statement has just accepted the key, and its hash stays out of the SQL text and its log.)"""
    prefix = raw_key[:PREFIX_LENGTH]
    recorded = _RECORDED_USES.get(prefix)
    if recorded is not None and time.monotonic() - recorded < LAST_USED_RESOLUTION.total_seconds():
        return
    now = timezone.now()
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ApiKey.objects.filter(stale, prefix=prefix).update(last_used_at=now)
    _remember_use(prefix, age=timedelta(0))


def _remember_use(prefix: str, age: timedelta) -> None:
    if len(_RECORDED_USES) >= _RECORDED_USES_MAX:
        _RECORDED_USES.clear()
    _RECORDED_USES[prefix] = time.monotonic() - age.total_seconds()
