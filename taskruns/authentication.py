"""``Authorization: Bearer <key>`` authentication for DRF, backed by taskruns.keys."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from .keys import find_active_key
from .models import ApiKey

# How stale `last_used_at` may get before a request refreshes it: one write per key per
# interval instead of one per request.
LAST_USED_RESOLUTION = timedelta(minutes=5)


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticates ``Authorization: Bearer <key>``; ``request.auth`` is the ApiKey.

    Put it first in DEFAULT_AUTHENTICATION_CLASSES so that unauthenticated requests get 401
    with ``WWW-Authenticate: Bearer`` (DRF takes the header from the first class).
    """

    keyword = "Bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                _("Invalid Authorization header: expected 'Bearer <key>'."),
                code="invalid_authorization_header",
            )
        try:
            raw_key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid API key."), code="invalid_api_key") from None
        api_key = find_active_key(raw_key)
        if api_key is None or not api_key.user.is_active:
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
