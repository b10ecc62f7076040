"""A run's time in each status, as a small inline SVG bar for its admin page (no outside assets).

The segments come from the run's history: it is created in its first status, each
``status_changed`` event ends one status and starts the next, and the last status lasts until the
run completed (or until now). Each segment's width is its share of the run's life; hovering one
shows its status and duration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .models import TaskRun, TaskRunEventKind

WIDTH, HEIGHT = 600, 22
#: Segment colours by status (the admin's status badge text colours).
COLOURS = {
    "not_started": "#6c757d",
    "queued": "#1f6fb2",
    "in_progress": "#c69500",
    "completed": "#2e7d32",
    "failed": "#c62828",
    "cancelled": "#455a64",
}


@dataclass(frozen=True)
class Segment:
    status: str
    started: datetime
    ended: datetime

    @property
    def duration(self) -> timedelta:
        return max(self.ended - self.started, timedelta(0))


def segments(run: TaskRun, now: datetime | None = None) -> list[Segment]:
    """The statuses the run has been in, in order, each with when it started and ended."""
    moves = list(
        run.events.filter(kind=TaskRunEventKind.STATUS_CHANGED)
        .order_by("id")
        .values_list("from_value", "to_value", "created_at")
    )
    end_of_life = run.completed_at or now or timezone.now()
    status, started = (moves[0][0] if moves else run.status), run.created_at
    result = []
    for _old, new, at in moves:
        result.append(Segment(status, started, at))
        status, started = new, at
    result.append(Segment(status, started, max(end_of_life, started)))
    return result


def human(duration: timedelta) -> str:
    total = int(duration.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def timeline_svg(run: TaskRun) -> str:
    parts = segments(run)
    total = sum((part.duration for part in parts), timedelta(0)).total_seconds() or 1.0
    x = 0.0
    rects = []
    for part in parts:
        width = WIDTH * part.duration.total_seconds() / total
        rects.append(
            (
                f"{x:.1f}",
                f"{max(width, 1.0):.1f}",
                COLOURS.get(part.status, "#999"),
                part.status,
                human(part.duration),
            )
        )
        x += width
    bars = format_html_join(
        "",
        '<rect class="segment" x="{}" y="0" width="{}" height="' + str(HEIGHT) + '" fill="{}">'
        "<title>{}: {}</title></rect>",
        rects,
    )
    legend = format_html_join(" · ", "{} {}", ((part.status, human(part.duration)) for part in parts))
    return format_html(
        '<svg class="taskruns-timeline" role="img" width="{}" height="{}" viewBox="0 0 {} {}" '
        'xmlns="http://www.w3.org/2000/svg">{}</svg><div class="taskruns-timeline-legend">{}</div>',
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        bars,
        legend,
    )
