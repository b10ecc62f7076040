"""The reaper (design §12, taskruns.reaper) with a controlled clock: who is stale, who is kept,
and that a write landing in between wins. Both databases; the concurrency cases on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection, connections, transaction

from taskruns import reaper, signals, updates
from taskruns.models import TaskRun, TaskRunEvent

from .conftest import run_url, runs_url, stored

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float):
    """Travel to T0 + ``seconds`` (the clock stands still there)."""
    return time_machine.travel(T0 + timedelta(seconds=seconds), tick=False)


def create(api, task, **body) -> TaskRun:
    response = api.post(runs_url(task), body)
    assert response.status_code == 201, response.content
    return TaskRun.objects.get(pk=response.json()["id"])


def patch_status(api, run, status):
    assert api.patch(run_url(run), {"status": status}).status_code == 200


def heartbeat(api, run):
    return api.post(run_url(run, "heartbeat"))


def reaped_ids(**options) -> set[str]:
    return {str(run.pk) for run in reaper.reap(**options).reaped}


def started(api, task, seconds=0, **body) -> TaskRun:
    with at(seconds):
        run = create(api, task, **body)
        patch_status(api, run, "in_progress")
    return run


@pytest.fixture
def ttl(settings):
    def set_ttl(seconds):
        settings.TASKRUNS = {**settings.TASKRUNS, "QUEUED_TTL": seconds}

    return set_ttl


@pytest.fixture
def liveness(settings):
    """Install ``check`` as TASKRUNS["LIVENESS_CHECK"]."""

    def install(check):
        global LIVENESS
        LIVENESS = check
        settings.TASKRUNS = {**settings.TASKRUNS, "LIVENESS_CHECK": f"{__name__}.ask_liveness"}

    return install


LIVENESS = None


def ask_liveness(run):
    return LIVENESS(run)


def test_a_run_that_heartbeats_survives_and_a_silent_one_is_reaped(api, task):
    run = started(api, task, heartbeat_timeout=60)
    with at(30):
        assert heartbeat(api, run).status_code == 200
    with at(85):  # 55 s after the heartbeat: alive
        assert reaped_ids() == set()
        assert heartbeat(api, run).status_code == 200
    with at(140):
        assert reaped_ids() == set()
    with at(146):  # 61 s of silence
        assert reaped_ids() == {str(run.pk)}
    row = stored(run)
    assert row["status"] == "failed"
    assert row["error_code"] == "heartbeat_timeout"
    assert row["completed_at"] == T0 + timedelta(seconds=146)
    assert "heartbeat" in row["error_message"]
    assert list(
        TaskRunEvent.objects.filter(run=run)
        .order_by("id")
        .values_list("kind", "from_value", "to_value", "via")
    )[-2:] == [
        ("status_changed", "in_progress", "failed", "system"),
        ("reaped", "", "heartbeat_timeout", "system"),
    ]
    # Its executor's next heartbeat is told to stop.
    with at(150):
        response = heartbeat(api, run)
    assert response.status_code == 409
    assert response.json()["current_status"] == "failed"


def test_a_run_that_never_heartbeats_is_reaped_from_its_start(api, task):
    run = started(api, task, seconds=100, heartbeat_timeout=60)
    with at(159):
        assert reaped_ids() == set()
    with at(161):
        assert reaped_ids() == {str(run.pk)}
    assert api.get(run_url(run)).json()["error_code"] == "heartbeat_timeout"


def test_a_resumed_run_is_neither_told_to_stop_nor_reaped_for_its_past(api, task):
    run = started(api, task, heartbeat_timeout=60)
    with at(10):
        heartbeat(api, run)
    with at(20):
        assert api.post(run_url(run, "cancel"), {"reason": "stop"}).status_code == 202
    with at(30):
        patch_status(api, run, "cancelled")
    with at(1000):
        assert api.post(run_url(run, "resume_in_cloud")).status_code == 200
    with at(1010):
        patch_status(api, run, "in_progress")
    with at(1040):  # the old heartbeat (t=10) is long past the timeout; the new start is not
        answer = heartbeat(api, run)
        assert answer.status_code == 200
        assert answer.json()["cancel_requested"] is False
        assert reaped_ids() == set()
    with at(1099):
        assert reaped_ids() == set()
    assert stored(run)["status"] == "in_progress"
    assert stored(run)["cancel_requested_at"] is None


def test_a_queued_run_past_the_ttl_is_reaped(api, task, ttl):
    ttl(300)
    with at(0):
        run = create(api, task)
        waiting = create(api, task, status="not_started")
    with at(299):
        assert reaped_ids() == set()
    with at(301):
        assert reaped_ids() == {str(run.pk)}
    assert (stored(run)["status"], stored(run)["error_code"]) == ("failed", "queued_timeout")
    assert stored(waiting)["status"] == "not_started"


def test_by_default_nothing_is_ever_reaped(api, task):
    """PostHog's agents never heartbeat: with the default settings their runs are never stale."""
    run = started(api, task)
    with at(0):
        queued = create(api, task)
    with at(365 * 24 * 3600):
        assert reaper.reap().found == []
    assert stored(run)["status"] == "in_progress"
    assert stored(queued)["status"] == "queued"


def test_a_run_completed_between_selection_and_the_write_keeps_completed(api, task, liveness):
    run = started(api, task, heartbeat_timeout=60)

    def finish_meanwhile(candidate):
        # The run's agent reports completion after the reaper chose it, before it claims it.
        updates.update_run(candidate.pk, {"status": "completed"})
        return False

    liveness(finish_meanwhile)
    with at(100):
        result = reaper.reap()
    assert [str(r.pk) for r in result.skipped] == [str(run.pk)]
    assert result.reaped == []
    row = stored(run)
    assert (row["status"], row["error_code"]) == ("completed", None)
    assert not TaskRunEvent.objects.filter(run=run, kind="reaped").exists()


def test_a_heartbeat_between_selection_and_the_write_keeps_the_run(api, task, liveness):
    run = started(api, task, heartbeat_timeout=60)
    liveness(lambda candidate: heartbeat(api, candidate) and False)
    with at(100):
        result = reaper.reap()
    assert [str(r.pk) for r in result.skipped] == [str(run.pk)]
    assert stored(run)["status"] == "in_progress"


def test_the_liveness_check_can_veto(api, task, liveness):
    alive = started(api, task, heartbeat_timeout=60)
    dead = started(api, task, heartbeat_timeout=60)
    liveness(lambda run: run.pk == alive.pk)
    with at(100):
        result = reaper.reap()
    assert [str(r.pk) for r in result.kept] == [str(alive.pk)]
    assert [str(r.pk) for r in result.reaped] == [str(dead.pk)]
    assert stored(alive)["status"] == "in_progress"


def test_a_failing_liveness_check_keeps_the_run(api, task, liveness, caplog):
    run = started(api, task, heartbeat_timeout=60)

    def broken(run):
        raise RuntimeError("orchestrator unreachable")

    liveness(broken)
    with at(100):
        result = reaper.reap()
    assert [str(r.pk) for r in result.kept] == [str(run.pk)]
    assert stored(run)["status"] == "in_progress"
    assert "liveness check failed" in caplog.text


def test_reaping_is_announced_after_commit(api, task, django_capture_on_commit_callbacks):
    run = started(api, task, heartbeat_timeout=60)
    received = []

    def on_reaped(sender, run, **kwargs):
        received.append(("reaped", str(run.pk), run.error_code))

    def on_status(sender, run, old_status, new_status, **kwargs):
        received.append(("status", old_status, new_status))

    signals.run_reaped.connect(on_reaped)
    signals.run_status_changed.connect(on_status)
    try:
        with at(100), django_capture_on_commit_callbacks(execute=True):
            reaper.reap()
    finally:
        signals.run_reaped.disconnect(on_reaped)
        signals.run_status_changed.disconnect(on_status)
    assert received == [("status", "in_progress", "failed"), ("reaped", str(run.pk), "heartbeat_timeout")]


def test_oldest_first_in_batches_and_within_the_limit(api, task):
    runs = [started(api, task, seconds=index, heartbeat_timeout=60) for index in range(7)]
    with at(1000):
        assert [r.pk for r in reaper.reap(dry_run=True, batch_size=3).found] == [r.pk for r in runs]
        first = reaper.reap(limit=4, batch_size=3)
    assert [r.pk for r in first.reaped] == [r.pk for r in runs[:4]]
    with at(1000):
        assert [r.pk for r in reaper.reap(batch_size=2).reaped] == [r.pk for r in runs[4:]]


def test_the_command_reaps_and_says_what_it_did(api, task):
    run = started(api, task, heartbeat_timeout=60)
    out = StringIO()
    with at(100):
        call_command("taskruns_reap", "--dry-run", stdout=out)
    assert f"would reap {run.pk}" in out.getvalue()
    assert "1 stale runs found; nothing changed" in out.getvalue()
    assert stored(run)["status"] == "in_progress"
    out = StringIO()
    with at(100):
        call_command("taskruns_reap", "--limit", "10", stdout=out)
    assert f"reaped {run.pk}: heartbeat_timeout" in out.getvalue()
    assert "1 reaped, 0 kept, 0 skipped of 1 stale runs found." in out.getvalue()
    assert stored(run)["status"] == "failed"


def test_the_command_refuses_a_bad_limit():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--limit"):
        call_command("taskruns_reap", "--limit", "0")


# --- The admin ----------------------------------------------------------------------------


def test_the_admin_shows_stale_runs_and_reaps_the_selected_ones(api, task, admin_client):
    stale = started(api, task, heartbeat_timeout=60)
    other_stale = started(api, task, heartbeat_timeout=60)
    fresh = started(api, task, seconds=90, heartbeat_timeout=60)
    with at(100):
        listing = admin_client.get("/admin/taskruns/taskrun/?stale=yes").content.decode()
        assert str(stale.pk) in listing and str(other_stale.pk) in listing
        assert str(fresh.pk) not in listing
        page = admin_client.post(
            "/admin/taskruns/taskrun/",
            {"action": "reap_now", "_selected_action": [str(stale.pk), str(fresh.pk)]},
            follow=True,
        ).content.decode()
    assert (
        "1 reaped, 0 kept by the liveness check, 0 changed meanwhile; 1 of the selected runs are not stale."
        in page
    )
    assert stored(stale)["status"] == "failed"
    assert stored(other_stale)["status"] == "in_progress"  # not selected
    assert stored(fresh)["status"] == "in_progress"
    assert TaskRunEvent.objects.get(run=stale, kind="reaped").via == "admin"


# --- PostgreSQL: the index, and reapers beside each other and beside writers -----------------


@pytest.mark.postgres
def test_the_candidates_are_read_through_the_partial_indexes(api, task, ttl):
    ttl(300)
    started(api, task, heartbeat_timeout=60)
    sql, params = reaper.stale_runs(T0).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "taskruns_run_reap_in_progress" in plan, plan
    assert "taskruns_run_reap_queued" in plan, plan


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_reapers_at_once_reap_each_run_once(api, task):
    runs = [started(api, task, heartbeat_timeout=60) for _ in range(40)]
    results = []
    barrier = threading.Barrier(2)

    def reap_in_thread():
        try:
            barrier.wait()
            results.append(reaper.reap(now=T0 + timedelta(seconds=100), batch_size=7))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=reap_in_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 2
    reaped = [run.pk for result in results for run in result.reaped]
    assert sorted(reaped) == sorted(run.pk for run in runs)
    assert TaskRunEvent.objects.filter(kind="reaped").count() == 40
    assert set(TaskRun.objects.values_list("status", flat=True)) == {"failed"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_reaper_skips_a_run_a_writer_holds_instead_of_waiting(api, task):
    held = started(api, task, heartbeat_timeout=60)
    free = started(api, task, heartbeat_timeout=60)
    locked, release = threading.Event(), threading.Event()

    def hold_the_row():
        try:
            with transaction.atomic():
                TaskRun.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(timeout=60)
        finally:
            connections.close_all()

    writer = threading.Thread(target=hold_the_row)
    writer.start()
    try:
        assert locked.wait(timeout=30)
        result = reaper.reap(now=T0 + timedelta(seconds=100))
    finally:
        release.set()
        writer.join(timeout=60)
    assert [r.pk for r in result.skipped] == [held.pk]
    assert [r.pk for r in result.reaped] == [free.pk]
    assert stored(held)["status"] == "in_progress"
