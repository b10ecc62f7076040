"""Who may see which project. Everything outside a user's projects answers 404.

The policy is a class named by ``TASKRUNS["ACCESS_POLICY"]`` with one method,
``visible_projects(user) -> QuerySet[Project]``. An API key limited to some projects narrows
that set further.
"""

from __future__ import annotations

from django.db.models import Exists, Q, QuerySet

from .conf import app_settings
from .models import ApiKey, Project


class ProjectMembershipPolicy:
    """The default policy: a user sees the projects they are a member of."""

    def visible_projects(self, user) -> QuerySet[Project]:
        if not getattr(user, "is_authenticated", False):
            return Project.objects.none()
        return Project.objects.filter(members=user)


def visible_projects(request) -> QuerySet[Project]:
    """The projects this request may read and write, as a lazy queryset (used as a subquery)."""
    policy = app_settings.import_from("ACCESS_POLICY")()
    projects = policy.visible_projects(request.user)
    if isinstance(request.auth, ApiKey):
        # Evaluated inside the caller's query, not here: a key with no project list is
        # unrestricted, otherwise it reaches only its listed projects.
        limits = ApiKey.projects.through.objects.filter(apikey_id=request.auth.pk)
        projects = projects.filter(~Exists(limits) | Q(pk__in=limits.values("project_id")))
    return projects
