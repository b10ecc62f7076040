"""``Authorization: Bearer <key>`` authentication for DRF, backed by taskruns.keys.

It authenticates the app's own routes only (``TASKRUNS["AUTHENTICATION_CLASSES"]``); a host
never needs it in its ``REST_FRAMEWORK`` defaults. A Bearer value that does not carry the app's
key prefix is another scheme's business: the class steps aside (returns None) so that a host's
JWT or OAuth class named after it can take the request.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from .keys import KEY_MARK, find_active_key
from .models import ApiKey

# How stale `last_used_at` may get before a request refreshes it: one write per key per
# interval instead of one per request.
LAST_USED_RESOLUTION = timedelta(minutes=5)

#: The code of a 401 for a key that is malformed, unknown, revoked, expired or refused.
INVALID_API_KEY = "invalid_api_key"


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticates ``Authorization: Bearer trk_…``; ``request.auth`` is the ApiKey.

    A subclass may refuse more keys by overriding ``authenticate`` or ``accepts`` (say, keys of
    a suspended team): the app's views authenticate through the configured classes' own
    ``authenticate()`` on every route and method, so a refusal is always honoured.
    """

    keyword = "Bearer"

    def presented_key(self, request: Request) -> str | None:
        """The app's key in the request's Bearer header, not yet checked; None when the request
        carries no Bearer header or one that is not an app key (another scheme's)."""
        parts = get_authorization_header(request).split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower().encode():
            return None
        if not parts[1].startswith(KEY_MARK.encode()):
            return None
        try:
            return parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid API key."), code=INVALID_API_KEY) from None

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        raw_key = self.presented_key(request)
        if raw_key is None:
            return None
        api_key = find_active_key(raw_key)
        if api_key is None or not self.accepts(api_key):
            raise exceptions.AuthenticationFailed(_("Invalid API key."), code=INVALID_API_KEY)
        _touch(api_key)
        return api_key.user, api_key

    def accepts(self, api_key: ApiKey) -> bool:
        """Whether a key found by its prefix and hash authenticates: it has not expired and its
        user is active. The hook for a host's subclass that refuses more keys."""
        return not api_key.is_expired() and bool(api_key.user.is_active)

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


def _touch(api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
