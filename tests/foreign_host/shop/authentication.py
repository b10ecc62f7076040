from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from .models import PartnerToken


class PartnerBearerAuthentication(BaseAuthentication):
    """The host's Bearer scheme: any Bearer value is its business on the host's routes."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if len(parts) != 2 or parts[0].lower() != b"bearer":
            return None
        found = PartnerToken.objects.select_related("user").filter(token=parts[1].decode()).first()
        if found is None:
            raise exceptions.AuthenticationFailed("Unknown partner token.")
        return found.user, found

    def authenticate_header(self, request):
        return 'Bearer realm="shop"'
