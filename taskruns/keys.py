"""Bearer API keys: how they are made, stored and checked.

Keys are 256-bit random tokens, so a plain SHA-256 is a sufficient one-way store (a slow
password hash would only add latency to every request). A key is found by its public prefix
and then its hash is compared in constant time. Every key starts with ``KEY_MARK``, so that a
Bearer value of another scheme is recognisably not the app's.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import rows
from .models import ApiKey, Project

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


def issue_key(
    user: Any, name: str, projects: Iterable[Project] = (), expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Create a key for ``user`` (limited to ``projects`` if any, valid until ``expires_at``
    if set) and return it with the raw key."""
    api_key = ApiKey(user=user, name=name, expires_at=expires_at)
    raw_key = assign_new_key(api_key)
    with transaction.atomic(using=rows.database_of(ApiKey)):
        api_key.save()
        if projects:
            api_key.projects.set(projects)
    return api_key, raw_key


def find_active_key(raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key`` (with its user loaded), or None."""
    if not is_well_formed(raw_key):
        return None
    user_model = get_user_model()
    using = rows.database_of(ApiKey)
    sql = (
        f"SELECT {rows.columns(ApiKey, 'k', using)}, {rows.columns(user_model, 'u', using)} "
        f"FROM {_keys_of_users()} WHERE k.prefix = %s AND k.revoked_at IS NULL"
    )
    row = rows.fetch_one(sql, [raw_key[:PREFIX_LENGTH]], using)  # on every request: hand-written
    if row is None:
        return None
    split = rows.width(ApiKey)
    candidate = rows.instance(ApiKey, row[:split], using)
    if not hmac.compare_digest(candidate.key_hash, hash_key(raw_key)):
        return None
    candidate.user = rows.instance(user_model, row[split:], using)
    return candidate


def is_well_formed(raw_key: str) -> bool:
    return raw_key.startswith(KEY_MARK) and len(raw_key) > PREFIX_LENGTH


@functools.cache
def _keys_of_users() -> str:
    user_model = get_user_model()
    return (
        f"{ApiKey._meta.db_table} k JOIN {user_model._meta.db_table} u "
        f"ON u.{user_model._meta.pk.column} = k.user_id"
    )


def revoke(keys: QuerySet[ApiKey]) -> int:
    """Revoke the given active keys now; returns how many were revoked."""
    return keys.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
