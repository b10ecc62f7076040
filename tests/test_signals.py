"""Signals for the host (design §8): after commit, only on a real change, robust to receivers."""

from __future__ import annotations

import pytest

from taskruns import signals

from .conftest import run_url, runs_url


@pytest.fixture
def received():
    calls = []

    def make(name):
        def receiver(sender, run, **kwargs):
            calls.append(
                (
                    name,
                    str(run.pk),
                    kwargs.get("old_status") or kwargs.get("old_environment"),
                    kwargs.get("new_status") or kwargs.get("new_environment"),
                )
            )

        return receiver

    receivers = {
        signals.run_created: make("created"),
        signals.run_status_changed: make("status"),
        signals.run_environment_changed: make("environment"),
        signals.run_resumed_in_cloud: make("resumed"),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver)
    yield calls
    for signal, receiver in receivers.items():
        signal.disconnect(receiver)


def test_status_change_is_announced_after_commit(api, run, received, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        api.patch(run_url(run), {"status": "in_progress"}, format="json")
    assert received == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert received == [("status", str(run.pk), "queued", "in_progress")]


def test_no_signal_without_a_real_change(api, run, received, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        api.patch(
            run_url(run), {"status": "queued", "environment": "local", "state": {"a": 1}}, format="json"
        )
    assert received == []


def test_rejected_change_sends_nothing(api, run, received, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        api.patch(run_url(run), {"status": "cancelled"}, format="json")
        api.patch(run_url(run), {"status": "in_progress"}, format="json")
    assert received == [("status", str(run.pk), "queued", "cancelled")]
    assert len(callbacks) == 1


def test_cloud_to_local_hand_off_is_announced(api, run, received, django_capture_on_commit_callbacks):
    run.__class__.objects.filter(pk=run.pk).update(environment="cloud")
    with django_capture_on_commit_callbacks(execute=True):
        api.patch(run_url(run), {"environment": "local"}, format="json")
    assert received == [("environment", str(run.pk), "cloud", "local")]


def test_run_creation_and_resume_are_announced(api, task, received, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run_id = api.post(runs_url(task), {"status": "not_started"}, format="json").json()["id"]
    assert received == [("created", run_id, None, None)]
    received.clear()
    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"{runs_url(task)}{run_id}/resume_in_cloud/", format="json")
    assert received == [
        ("status", run_id, "not_started", "queued"),
        ("environment", run_id, "local", "cloud"),
        ("resumed", run_id, None, None),
    ]


def test_a_failing_receiver_does_not_fail_the_request(api, run, django_capture_on_commit_callbacks, caplog):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    signals.run_status_changed.connect(broken)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = api.patch(run_url(run), {"status": "completed"}, format="json")
    finally:
        signals.run_status_changed.disconnect(broken)
    assert response.status_code == 200
    assert run.__class__.objects.get(pk=run.pk).status == "completed"
    assert "receiver bug" in caplog.text
