"""Who may see which project. Everything outside a user's projects answers 404.

The policy is a class named by ``TASKRUNS["ACCESS_POLICY"]`` with one method,
``visible_projects(user) -> QuerySet[Project]``, and optionally a second,
``visible_projects_sql(user) -> (sql, params)`` selecting the same project ids, which the
one-statement PATCH and the read of a run embed instead of compiling the queryset on every
request (a policy without it still works, a little slower). The default policy needs neither on
PostgreSQL: a function made by migration 0005 checks it. An API key limited to some projects
narrows the set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db import connections
from django.db.models import Exists, Q, QuerySet

from .conf import app_settings
from .models import ApiKey, Project, Task, TaskRun

KEY_PROJECTS = ApiKey.projects.through._meta.db_table
MEMBERS = Project.members.through._meta.db_table
# The members table's user column is named after the host's user model (user_id, customer_id…).
MEMBER_COLUMN = Project._meta.get_field("members").m2m_reverse_name()
# Made by migration 0005 on PostgreSQL: the default policy's reach, planned once per connection.
REACH_FUNCTION = "taskruns_may_reach"


class ProjectMembershipPolicy:
    """The default policy: a user sees the projects they are a member of."""

    def visible_projects(self, user: Any) -> QuerySet[Project]:
        if not getattr(user, "is_authenticated", False):
            return Project.objects.none()
        return Project.objects.filter(members=user)

    def visible_projects_sql(self, user: Any) -> tuple[str, list[Any]]:
        if not getattr(user, "is_authenticated", False):
            return f"SELECT project_id FROM {MEMBERS} WHERE 1 = 0", []
        return f"SELECT project_id FROM {MEMBERS} WHERE {MEMBER_COLUMN} = %s", [user.pk]


def policy_projects(user: Any) -> QuerySet[Project]:
    """The projects the access policy gives ``user`` (the admin's scope for staff)."""
    projects: QuerySet[Project] = app_settings.import_from("ACCESS_POLICY")().visible_projects(user)
    return projects


def visible_projects(request: Any) -> QuerySet[Project]:
    """The projects this request may read and write, as a lazy queryset (used as a subquery)."""
    projects = policy_projects(request.user)
    if isinstance(request.auth, ApiKey):
        # Evaluated inside the caller's query, not here: a key with no project list is
        # unrestricted, otherwise it reaches only its listed projects.
        limits = ApiKey.projects.through.objects.filter(apikey_id=request.auth.pk)
        projects = projects.filter(~Exists(limits) | Q(pk__in=limits.values("project_id")))
    return projects


@dataclass(frozen=True)
class RunScope:
    """The runs a request may read and write: those of one live task in one project the
    request may see. As a queryset for reads, and as SQL for the one-statement PATCH; the two
    select the same rows (tests/test_access.py checks both against every kind of caller)."""

    request: Any
    project_id: int
    task_id: UUID

    def runs(self) -> QuerySet[TaskRun]:
        return TaskRun.objects.filter(
            task_id=self.task_id,
            task__deleted_at__isnull=True,
            project_id=self.project_id,
            project__in=visible_projects(self.request),
        )

    def sql(self, run_alias: str, using: str) -> tuple[str, list[Any]]:
        """A condition that the run row ``run_alias`` is in scope.

        Every check but the run's own columns is on the request's constants (the task, the
        project, the user, the key). Under the default policy on PostgreSQL they are one call of
        the function made by migration 0005, whose queries are planned once per connection;
        otherwise they are one-time subqueries, planned with each statement."""
        connection = connections[using]
        task_id = Task._meta.pk.get_db_prep_value(self.task_id, connection)
        sql = f"{run_alias}.task_id = %s AND {run_alias}.project_id = %s AND "
        params = [task_id, self.project_id]
        policy = app_settings.import_from("ACCESS_POLICY")()
        if _reach_function_applies(policy, connection.vendor):
            user = self.request.user
            user_id = user.pk if getattr(user, "is_authenticated", False) else None
            api_key_id = self.request.auth.pk if isinstance(self.request.auth, ApiKey) else None
            return sql + f"{REACH_FUNCTION}(%s, %s, %s, %s)", [
                *params,
                task_id,
                self.project_id,
                user_id,
                api_key_id,
            ]
        reach_sql, reach_params = self._inline_reach_sql(policy, task_id)
        return sql + reach_sql, params + reach_params

    def _inline_reach_sql(self, policy: Any, task_id: Any) -> tuple[str, list[Any]]:
        if hasattr(policy, "visible_projects_sql"):
            projects_sql, projects_params = policy.visible_projects_sql(self.request.user)
        else:
            projects_sql, projects_params = (
                policy.visible_projects(self.request.user).values("pk").query.sql_with_params()
            )
        sql = (
            f"EXISTS (SELECT 1 FROM {Task._meta.db_table} WHERE id = %s AND deleted_at IS NULL) "
            f"AND %s IN ({projects_sql})"
        )
        params = [task_id, self.project_id, *projects_params]
        if isinstance(self.request.auth, ApiKey):
            # A key with no project list is unrestricted; otherwise it reaches its listed projects.
            sql += (
                f" AND (NOT EXISTS (SELECT 1 FROM {KEY_PROJECTS} WHERE apikey_id = %s)"
                f" OR EXISTS (SELECT 1 FROM {KEY_PROJECTS} WHERE apikey_id = %s AND project_id = %s))"
            )
            params += [self.request.auth.pk, self.request.auth.pk, self.project_id]
        return sql, params


def _reach_function_applies(policy: Any, vendor: str) -> bool:
    return vendor == "postgresql" and type(policy) is ProjectMembershipPolicy
