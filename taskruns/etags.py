"""Strong ETags for runs, derived from the row's version.

The tag also says whether the run has a log, because ``log_url`` appears with the first log
entry while the version (the count of writes to the row) stays the same. Preconditions
(``If-Match``) compare versions only: the log never makes a write conflict.
"""

from __future__ import annotations

from django.utils.http import parse_etags

from .models import TaskRun


def etag_for(run: TaskRun) -> str:
    suffix = "-log" if run.has_log else ""
    return f'"{run.version}{suffix}"'


def if_match_versions(header: str | None) -> frozenset[int] | None:
    """The versions an ``If-Match`` header accepts; None when there is no precondition.

    ``*`` matches any existing run. A weak or foreign tag matches nothing (strong comparison),
    so such a request fails its precondition rather than writing blindly.
    """
    if not header:
        return None
    tags = parse_etags(header)
    if "*" in tags:
        return None
    versions = set()
    for tag in tags:
        version = tag.strip('"').removesuffix("-log")
        # ASCII digits only, and no longer than a version can be: "²" and 5,000 digits are
        # tags of no version (int() would refuse the one and the other), so they match nothing.
        if tag.startswith('"') and version.isascii() and version.isdigit() and len(version) <= 19:
            versions.add(int(version))
    return frozenset(versions)


def if_none_match_hits(header: str | None, run: TaskRun) -> bool:
    """Whether a GET's ``If-None-Match`` already holds the run's current tag (answer 304)."""
    if not header:
        return False
    tags = parse_etags(header)
    current = etag_for(run)
    # If-None-Match uses weak comparison: W/"7" matches "7".
    return "*" in tags or any(tag.removeprefix("W/") == current for tag in tags)
