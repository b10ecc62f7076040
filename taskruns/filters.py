"""Filters of the run lists (design §14), with django-filter.

One filter set serves the task's run list and the project-wide one (which adds ``task``). A
value the filter cannot take is a 400 naming the parameter and a code (``invalid_choice``,
``invalid``), never an unfiltered list. Staleness is the rule book's (taskruns.rules.stale).
Every filter and ordering has an index that starts with the run's task or project
(taskruns.models.TaskRun.Meta.indexes).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend

from . import rules
from .models import TaskRun, TaskRunEnvironment, TaskRunStatus

#: The orderings a list accepts (``ordering=-updated_at``); newest first by default.
ORDERINGS = ("created_at", "updated_at")
DEFAULT_ORDERING = "-created_at"


class StatusesFilter(django_filters.BaseInFilter, django_filters.ChoiceFilter):
    """One status or several, comma-separated (``status=queued,in_progress``)."""


class UTCDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, turned into UTC before it reaches the database: PostgreSQL refuses
    offsets past ±15:59 that Python accepts (``+21:18`` was a 500), and a time near year 1 whose
    offset takes it out of Python's range is a 400 ``invalid``, not an OverflowError."""

    def to_python(self, value: Any) -> Any:
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


class TimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


class RunFilterSet(django_filters.FilterSet):
    status = StatusesFilter(
        choices=TaskRunStatus.choices, help_text="One status or several, comma-separated."
    )
    environment = django_filters.ChoiceFilter(choices=TaskRunEnvironment.choices)
    stage = django_filters.CharFilter(help_text="Runs at exactly this stage.")
    created_after = TimeFilter(
        field_name="created_at", lookup_expr="gt", help_text="Created after this ISO 8601 time."
    )
    created_before = TimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Created before this ISO 8601 time."
    )
    updated_after = TimeFilter(
        field_name="updated_at", lookup_expr="gt", help_text="Last written after this ISO 8601 time."
    )
    # A choice, not a boolean filter: django-filter reads any other word as "no filter".
    stale = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        method="filter_stale",
        help_text="Only stale runs (true) or only the others (false); see the run lifecycle.",
    )
    ordering = django_filters.OrderingFilter(fields=ORDERINGS, help_text="Newest first by default.")

    class Meta:
        model = TaskRun
        fields: list[str] = []

    def filter_stale(self, runs: QuerySet[TaskRun], name: str, value: str) -> QuerySet[TaskRun]:
        condition = rules.stale(timezone.now())
        return runs.filter(condition) if value == "true" else runs.exclude(condition)

    def ordering_of(self) -> str:
        """The ordering this (valid) request asked for, or the default."""
        chosen = self.form.cleaned_data.get("ordering")
        return chosen[0] if chosen else DEFAULT_ORDERING


class ProjectRunFilterSet(RunFilterSet):
    task = django_filters.UUIDFilter(field_name="task_id", help_text="Only the runs of this task.")


class RunFilterBackend(DjangoFilterBackend):
    """django-filter's backend without its browsable-API form, whose template would need the
    host to add ``django_filters`` to ``INSTALLED_APPS``."""

    def to_html(self, request: Any, queryset: Any, view: Any) -> str:
        return ""
