"""System checks for ``TASKRUNS``: a bad setting stops start-up with a clear message."""

from __future__ import annotations

from django.core import checks
from django.utils.module_loading import import_string

from .conf import DEFAULTS, user_settings
from .models import TaskRunStatus
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
    for name in ("CLOUD_STARTER", "ACCESS_POLICY"):
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
