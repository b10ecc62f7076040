"""Bearer API keys: how they are made, stored and checked.

Keys are 256-bit random tokens, so a plain SHA-256 is a sufficient one-way store (a slow
password hash would only add latency to every request). A key is found by its public prefix
and then its hash is compared in constant time; or a statement that checks its caller's key
itself compares prefix and hash in the database (authenticating_key_sql).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db import connection, transaction
from django.utils import timezone

from . import rows
from .models import ApiKey

KEY_MARK = "trk_"
PREFIX_LENGTH = len(KEY_MARK) + 8


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8", "surrogatepass")).hexdigest()


def assign_new_key(api_key: ApiKey) -> str:
    """Give an unsaved ApiKey a fresh secret; returns the raw key, which is never stored."""
    raw_key = KEY_MARK + secrets.token_urlsafe(32)
    api_key.prefix = raw_key[:PREFIX_LENGTH]
    api_key.key_hash = hash_key(raw_key)
    return raw_key


def issue_key(user, name: str, projects=()) -> tuple[ApiKey, str]:
    """Create a key for ``user`` and return it with the raw key."""
    api_key = ApiKey(user=user, name=name)
    raw_key = assign_new_key(api_key)
    with transaction.atomic():
        api_key.save()
        if projects:
            api_key.projects.set(projects)
    return api_key, raw_key


def find_active_key(raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key`` (with its user loaded), or None."""
    if not is_well_formed(raw_key):
        return None
    user_model = get_user_model()
    sql = (
        f"SELECT {rows.columns(ApiKey, 'k')}, {rows.columns(user_model, 'u')} "
        f"FROM {_keys_of_users()} WHERE k.prefix = %s AND k.revoked_at IS NULL"
    )
    row = rows.fetch_one(sql, [raw_key[:PREFIX_LENGTH]])  # on every request: hand-written
    if row is None:
        return None
    split = rows.width(ApiKey)
    candidate = rows.instance(ApiKey, row[:split])
    if not hmac.compare_digest(candidate.key_hash, hash_key(raw_key)):
        return None
    candidate.user = rows.instance(user_model, row[split:])
    return candidate


def is_well_formed(raw_key: str) -> bool:
    return raw_key.startswith(KEY_MARK) and len(raw_key) > PREFIX_LENGTH


def authenticating_key_sql(raw_key: str) -> tuple[str, list] | None:
    """``FROM … WHERE …`` selecting the row ``k`` of the key ``raw_key`` (and ``u`` of its
    user) when ApiKeyAuthentication would accept it: the key is not revoked and its user is
    active. For a statement that checks its caller's key itself instead of after a lookup.

    None when the SQL cannot say it: a malformed key, or a user model whose ``is_active`` is
    neither a column nor always true.

    The hash is a bound parameter (taskruns.rows.fetch_one binds on the server), never part
    of the statement's text, and Django's SQL log prints it as ``'<key hash>'``. The database
    compares it with ``=``, not in constant time: the timing could tell at most how much of
    the SHA-256 of a key the caller chose matches the stored one, which brings no one closer
    to a key of 256 random bits."""
    active = _user_is_active_sql()
    if active is None or not is_well_formed(raw_key):
        return None
    sql = f"{_keys_of_users()} WHERE k.prefix = %s AND k.key_hash = %s AND k.revoked_at IS NULL AND {active}"
    return sql, [raw_key[:PREFIX_LENGTH], _LoggedHidden(hash_key(raw_key))]


class _LoggedHidden(str):
    """A key hash as a statement parameter: the database gets the text, Django's SQL log (which
    prints the parameters' repr) does not."""

    def __repr__(self) -> str:
        return "'<key hash>'"


@functools.cache
def _keys_of_users() -> str:
    user_model = get_user_model()
    return (
        f"{ApiKey._meta.db_table} k JOIN {user_model._meta.db_table} u "
        f"ON u.{user_model._meta.pk.column} = k.user_id"
    )


@functools.cache
def _user_is_active_sql() -> str | None:
    """The SQL twin of ``user.is_active`` on the row ``u``, if there is one."""
    user_model = get_user_model()
    try:
        field = user_model._meta.get_field("is_active")
    except FieldDoesNotExist:
        # AbstractBaseUser's default is the constant True; a property could say anything.
        return "TRUE" if getattr(user_model, "is_active", None) is True else None
    return f"u.{connection.ops.quote_name(field.column)}" if field.concrete else None


def accepts(api_key: ApiKey | None) -> bool:
    """Whether a key found by find_active_key authenticates: its user must be active."""
    return api_key is not None and api_key.user.is_active


def revoke(keys) -> int:
    """Revoke the given active keys now; returns how many were revoked."""
    return keys.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
