"""Requests authenticated by the statement they run, not by a lookup first (PostgreSQL).

An agent's most frequent calls, reading and PATCHing a run, are one statement each. Looking the
Bearer key up first doubled their round trips to the database and cost a PATCH about a quarter
of its CPU (app and database, measured in-process as bench/cpu.py does). Instead the
statement's scope condition accepts the key only where ApiKeyAuthentication would, and reaches
only what the key's user may reach (taskruns.access.RunScope with a ``key_check``), so an
accepted key is checked as thoroughly as before, and a refused one leaves the statement with no
row and nothing written.

What DRF would have done before the view still happens whenever it matters: anything that
reads ``request.user`` (a status move's history, a host's throttle) authenticates the request
then, as DRF does lazily; and any error answer authenticates it first, so a bad key is a 401
before any other error, as when DRF checks the key first.
"""

from __future__ import annotations

from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework.exceptions import APIException, AuthenticationFailed, NotAuthenticated
from rest_framework.permissions import IsAuthenticated

from .access import KeyCheck, key_check
from .authentication import ApiKeyAuthentication, record_checked_use
from .exceptions import DatabaseUnavailable

NOT_AUTHENTICATED = (NotAuthenticated, AuthenticationFailed)


class KeyCheckedByStatement:
    """For a DRF view whose ``key_checking_actions`` each run one statement built with the
    view's ``key_check`` in its RunScope, and call ``key_checked()`` once it has accepted."""

    key_checking_actions: frozenset[str] = frozenset()
    # The check of the presented key that this request's statement makes (set by initial).
    key_check: KeyCheck | None = None

    def initial(self, request, *args, **kwargs):
        self.key_check = self.key_for_the_statement(request)
        super().initial(request, *args, **kwargs)

    def perform_authentication(self, request):
        if self.key_check is None:
            super().perform_authentication(request)

    def check_permissions(self, request):
        if self.key_check is None:
            super().check_permissions(request)

    def key_for_the_statement(self, request) -> KeyCheck | None:
        """The check of the Bearer key that this request's statement can make by itself, or
        None to authenticate first as usual: only when nothing else needs what a lookup would
        find — the key authenticator comes first, the permission is just IsAuthenticated (which
        an accepted key implies), and the scope can be SQL with the key in it
        (taskruns.access.key_check)."""
        if self.action not in self.key_checking_actions:
            return None
        authenticators = request.authenticators
        if not authenticators or not isinstance(authenticators[0], ApiKeyAuthentication):
            return None
        if list(self.permission_classes) != [IsAuthenticated]:
            return None
        try:
            raw_key = authenticators[0].presented_key(request)
        except AuthenticationFailed:
            return None  # authenticating as usual gives the 401
        return None if raw_key is None else key_check(raw_key)

    def key_checked(self) -> None:
        """The statement accepted the request's key: note its use, as authenticating does."""
        if self.key_check is not None:
            record_checked_use(self.key_check.raw_key)

    def handle_exception(self, exc):
        answers = isinstance(exc, APIException | Http404)
        if self.key_check is not None and answers and not isinstance(exc, NOT_AUTHENTICATED):
            # Nothing has checked the key yet: a bad key answers 401 before anything else.
            exc = self.authentication_failure() or exc
        return super().handle_exception(exc)

    def authentication_failure(self) -> APIException | None:
        """Authenticate the request now, as DRF would have before the view; the error to
        answer with instead if that fails."""
        self.key_check = None
        try:
            self.perform_authentication(self.request)
            self.check_permissions(self.request)
        except APIException as failure:
            return failure
        except (OperationalError, InterfaceError):
            return DatabaseUnavailable()
        return None
