"""System checks for ``TASKRUNS``: a bad setting stops start-up with a clear message."""

from __future__ import annotations

from django.apps import apps
from django.conf import settings as django_settings
from django.core import checks
from django.utils.module_loading import import_string

from .conf import DEFAULTS, user_settings
from .models import TaskRunStatus
from .spectacular_settings import ENUM_NAME_OVERRIDES
from .transitions import TERMINAL_STATUSES


@checks.register()
def check_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    config = user_settings()
    if not isinstance(config, dict):
        return [checks.Error("TASKRUNS must be a dict.", id="taskruns.E001")]
    errors: list[checks.CheckMessage] = []
    for name in sorted(set(config) - set(DEFAULTS)):
        errors.append(
            checks.Warning(
                f"TASKRUNS has an unknown key {name!r}.",
                hint=f"Known keys: {sorted(DEFAULTS)}.",
                id="taskruns.W001",
            )
        )
    errors += _check_transitions(config.get("TRANSITIONS"))
    for name in ("PROTECTED_STATE_KEYS", "RESUME_CLEAR_STATE_KEYS"):
        value = config.get(name, [])
        if not isinstance(value, list | tuple | set | frozenset) or not all(
            isinstance(k, str) for k in value
        ):
            errors.append(checks.Error(f"TASKRUNS[{name!r}] must be a list of strings.", id="taskruns.E003"))
    errors += _check_class_lists(config)
    for name in ("CLOUD_STARTER", "ACCESS_POLICY", "EXCEPTION_HANDLER"):
        path = config.get(name, DEFAULTS[name])
        if path is None and name == "CLOUD_STARTER":
            continue
        try:
            target = import_string(path)
        except (ImportError, TypeError, ValueError) as exc:
            errors.append(checks.Error(f"TASKRUNS[{name!r}] cannot be imported: {exc}", id="taskruns.E004"))
            continue
        if not callable(target):
            errors.append(checks.Error(f"TASKRUNS[{name!r}] must name a callable.", id="taskruns.E004"))
    return errors


def _check_class_lists(config) -> list[checks.CheckMessage]:
    """AUTHENTICATION_CLASSES and PERMISSION_CLASSES: lists of dotted paths to classes."""
    errors: list[checks.CheckMessage] = []
    for name in ("AUTHENTICATION_CLASSES", "PERMISSION_CLASSES"):
        paths = config.get(name, DEFAULTS[name])
        if isinstance(paths, str) or not isinstance(paths, list | tuple):
            errors.append(
                checks.Error(f"TASKRUNS[{name!r}] must be a list of dotted paths.", id="taskruns.E005")
            )
            continue
        for path in paths:
            try:
                target = import_string(path)
            except (ImportError, TypeError, ValueError) as exc:
                errors.append(
                    checks.Error(
                        f"TASKRUNS[{name!r}]: {path!r} cannot be imported: {exc}", id="taskruns.E005"
                    )
                )
                continue
            if not isinstance(target, type):
                errors.append(
                    checks.Error(f"TASKRUNS[{name!r}]: {path!r} is not a class.", id="taskruns.E005")
                )
    return errors


@checks.register()
def check_schema_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """The app's enum component names need the host's SPECTACULAR_SETTINGS (drf-spectacular
    names enums once for the whole schema): say so when they are missing."""
    if not apps.is_installed("drf_spectacular"):
        return []
    overrides = getattr(django_settings, "SPECTACULAR_SETTINGS", {}).get("ENUM_NAME_OVERRIDES", {})
    if missing := sorted(set(ENUM_NAME_OVERRIDES) - set(overrides)):
        return [
            checks.Warning(
                f"SPECTACULAR_SETTINGS['ENUM_NAME_OVERRIDES'] lacks taskruns' {missing}: the schema's "
                "enums will not have PostHog's names and may collide with the host's.",
                hint="Merge taskruns.spectacular_settings.ENUM_NAME_OVERRIDES into it (README, "
                "'Adding taskruns to an existing project').",
                id="taskruns.W002",
            )
        ]
    return []


def _check_transitions(table) -> list[checks.CheckMessage]:
    if table is None:
        return []
    statuses = set(TaskRunStatus.values)

    def error(message: str) -> checks.Error:
        return checks.Error(f"TASKRUNS['TRANSITIONS'] {message}", id="taskruns.E002")

    if not isinstance(table, dict):
        return [error("must be a dict of {status: [statuses]}.")]
    problems = []
    if missing := statuses - set(table):
        problems.append(error(f"has no row for {sorted(missing)}."))
    for source, targets in table.items():
        if source not in statuses:
            problems.append(error(f"names an unknown status {source!r}."))
            continue
        if isinstance(targets, str) or not all(t in statuses for t in targets):
            problems.append(error(f"row {source!r} must be a list of known statuses, got {targets!r}."))
        elif source in TERMINAL_STATUSES and targets:
            problems.append(error(f"lets terminal status {source!r} move; only resume_in_cloud may do that."))
    return problems
