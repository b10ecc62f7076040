"""Provision the app's API keys from the command line: issue (the raw key printed once), list,
revoke. For a host that gives its agents keys from a deployment script rather than the admin.

    manage.py taskruns_keys issue alice --name "ci agent" --project 3 --expires-in-days 90
    manage.py taskruns_keys list [--user alice] [--all]
    manage.py taskruns_keys revoke trk_AbCdEfGh [trk_…]
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from taskruns.keys import issue_key, revoke
from taskruns.models import ApiKey, Project


class Command(BaseCommand):
    help = "Issue, list and revoke taskruns API keys."

    def add_arguments(self, parser: Any) -> Any:
        commands = parser.add_subparsers(dest="command", required=True)
        issue = commands.add_parser("issue", help="Issue a key for a user; prints the key once.")
        issue.add_argument("user", help="The user, by their USERNAME_FIELD (e.g. username or e-mail).")
        issue.add_argument("--name", required=True, help="What the key is for, shown in lists.")
        issue.add_argument(
            "--project",
            type=int,
            action="append",
            default=[],
            dest="projects",
            help="Limit the key to this project id (repeatable); none: every project of the user.",
        )
        issue.add_argument("--expires-in-days", type=int, help="The key stops working after this.")
        issue.add_argument("--json", action="store_true", dest="as_json")
        listing = commands.add_parser("list", help="List keys (active ones unless --all).")
        listing.add_argument("--user", help="Only this user's keys.")
        listing.add_argument("--all", action="store_true", help="Revoked and expired keys too.")
        listing.add_argument("--json", action="store_true", dest="as_json")
        revoking = commands.add_parser("revoke", help="Revoke keys by their prefix (trk_ and 8 characters).")
        revoking.add_argument("prefixes", nargs="+")

    def handle(self, *args: Any, command: str, **options: Any) -> Any:
        getattr(self, f"handle_{command}")(**options)

    def handle_issue(
        self, *, user: Any, name: Any, projects: Any, expires_in_days: Any, as_json: Any, **options: Any
    ) -> Any:
        owner = find_user(user)
        found = list(Project.objects.filter(pk__in=projects))
        if missing := sorted(set(projects) - {project.pk for project in found}):
            raise CommandError(f"No project with id {', '.join(map(str, missing))}.")
        if expires_in_days is not None and expires_in_days <= 0:
            raise CommandError("--expires-in-days must be a positive number of days.")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        api_key, raw_key = issue_key(owner, name, projects=found, expires_at=expires_at)
        if as_json:
            self.stdout.write(json.dumps({**describe(api_key), "key": raw_key}))
            return
        self.stdout.write(raw_key)
        self.stderr.write(f"Issued {api_key} for {owner}. The key is shown once: store it now.")

    def handle_list(self, *, user: Any, all: Any, as_json: Any, **options: Any) -> Any:
        keys = ApiKey.objects.select_related("user").prefetch_related("projects").order_by("created_at")
        if user:
            keys = keys.filter(user=find_user(user))
        if not all:
            now = timezone.now()
            keys = keys.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)
        rows = [describe(api_key) for api_key in keys]
        if as_json:
            self.stdout.write(json.dumps(rows))
            return
        for row in rows:
            projects = ",".join(map(str, row["projects"])) or "all"
            self.stdout.write(
                f"{row['prefix']}  {row['name']!r}  user={row['user']}  projects={projects}  "
                f"expires={row['expires_at'] or 'never'}  revoked={row['revoked_at'] or 'no'}  "
                f"last used={row['last_used_at'] or 'never'}"
            )

    def handle_revoke(self, *, prefixes: Any, **options: Any) -> Any:
        known = set(ApiKey.objects.filter(prefix__in=prefixes).values_list("prefix", flat=True))
        if unknown := [prefix for prefix in prefixes if prefix not in known]:
            raise CommandError(f"No key with prefix {', '.join(unknown)}; nothing was revoked.")
        count = revoke(ApiKey.objects.filter(prefix__in=prefixes))
        self.stdout.write(f"Revoked {count} key(s).")


def find_user(identifier: str) -> Any:
    users = get_user_model()._default_manager
    try:
        return users.get_by_natural_key(identifier)
    except users.model.DoesNotExist:
        raise CommandError(f"No user {identifier!r}.") from None


def describe(api_key: ApiKey) -> dict[str, Any]:
    def when(moment: Any) -> Any:
        return moment.isoformat() if moment else None

    return {
        "prefix": api_key.prefix,
        "name": api_key.name,
        "user": str(api_key.user),
        "projects": sorted(project.pk for project in api_key.projects.all()),
        "created_at": when(api_key.created_at),
        "expires_at": when(api_key.expires_at),
        "revoked_at": when(api_key.revoked_at),
        "last_used_at": when(api_key.last_used_at),
    }
