"""Admin screens: run actions go through the transition rules, keys are shown once."""

from __future__ import annotations

import re
from datetime import UTC

from taskruns.keys import hash_key
from taskruns.models import ApiKey, Project, TaskRun

from .conftest import run_url


def run_action(admin_client, action, runs):
    return admin_client.post(
        "/admin/taskruns/taskrun/",
        {"action": action, "_selected_action": [str(r.pk) for r in runs], "post": "yes"},
        follow=True,
    )


def test_a_bulk_action_asks_first_and_lists_what_will_change_and_what_will_be_refused(
    admin_client, task, run
):
    done = TaskRun.objects.create(task=task, project=task.project, status="completed")
    before = {r.pk: (r.status, r.version) for r in TaskRun.objects.all()}
    response = admin_client.post(
        "/admin/taskruns/taskrun/",
        {"action": "mark_in_progress", "_selected_action": [str(run.pk), str(done.pk)]},
    )
    page = response.content.decode()
    assert response.status_code == 200 and "Are you sure?" in page
    will_change, will_refuse = page.split('id="will-change"')[1].split('id="will-refuse"')
    assert str(run.pk)[:8] in will_change and str(done.pk)[:8] not in will_change
    assert str(done.pk)[:8] in will_refuse and "completed → in_progress" in will_refuse
    assert {r.pk: (r.status, r.version) for r in TaskRun.objects.all()} == before  # nothing yet
    TaskRun.objects.filter(pk=run.pk).update(environment="cloud")
    response = admin_client.post(
        "/admin/taskruns/taskrun/",
        {"action": "resume_in_cloud", "_selected_action": [str(run.pk), str(done.pk)]},
    )
    will_change, will_refuse = (
        response.content.decode().split('id="will-change"')[1].split('id="will-refuse"')
    )
    assert str(done.pk)[:8] in will_change and "already active in cloud" in will_refuse


def test_the_run_page_has_a_readable_heading_badges_and_a_timeline(admin_client, task, run):
    from taskruns import updates

    updates.update_run(run.pk, {"status": "in_progress"})
    updates.update_run(run.pk, {"status": "completed"})
    page = admin_client.get(f"/admin/taskruns/taskrun/{run.pk}/change/").content.decode()
    assert f"{task.title} · run {str(run.pk)[:8]}" in page
    assert page.count('class="segment"') == 3  # queued, in progress, completed
    for status in ("queued", "in_progress", "completed"):
        assert f"<title>{status}: " in page
    listing = admin_client.get("/admin/taskruns/taskrun/").content.decode()
    assert 'class="taskruns-status"' in listing and str(run.pk)[:8] in listing


def test_tasks_offer_no_delete_in_the_admin(admin_client, task):
    page = admin_client.get(f"/admin/taskruns/task/{task.pk}/change/").content.decode()
    assert "deletelink" not in page
    assert admin_client.get(f"/admin/taskruns/task/{task.pk}/delete/").status_code == 403


def test_only_a_project_without_tasks_offers_delete(admin_client, task):
    project = task.project
    page = admin_client.get(f"/admin/taskruns/project/{project.pk}/change/").content.decode()
    assert "deletelink" not in page
    assert admin_client.get(f"/admin/taskruns/project/{project.pk}/delete/").status_code == 403
    listing = admin_client.get("/admin/taskruns/project/").content.decode()
    assert "delete_selected" not in listing
    empty = Project.objects.create(name="Empty")
    page = admin_client.get(f"/admin/taskruns/project/{empty.pk}/change/").content.decode()
    assert "deletelink" in page
    admin_client.post(f"/admin/taskruns/project/{empty.pk}/delete/", {"post": "yes"})
    assert not Project.objects.filter(pk=empty.pk).exists()
    assert Project.objects.filter(pk=project.pk).exists()


def test_status_action_changes_allowed_runs_and_reports_the_rest(admin_client, task, run):
    done = TaskRun.objects.create(task=task, project=task.project, status="completed")
    version = TaskRun.objects.get(pk=done.pk).version
    response = run_action(admin_client, "mark_cancelled", [run, done])
    page = response.content.decode()
    assert "1 run changed." in page
    assert "1 could not be changed" in page and str(done.pk) in page
    assert TaskRun.objects.get(pk=run.pk).status == "cancelled"
    assert TaskRun.objects.get(pk=run.pk).completed_at is not None
    assert TaskRun.objects.get(pk=done.pk).status == "completed"
    assert TaskRun.objects.get(pk=done.pk).version == version


def test_resume_action_moves_runs_into_cloud(admin_client, run):
    TaskRun.objects.filter(pk=run.pk).update(status="failed")
    page = run_action(admin_client, "resume_in_cloud", [run]).content.decode()
    assert "1 run changed." in page
    row = TaskRun.objects.get(pk=run.pk)
    assert (row.status, row.environment) == ("queued", "cloud")
    # A second resume is refused (already active in cloud) and reported, not raised.
    page = run_action(admin_client, "resume_in_cloud", [run]).content.decode()
    assert "1 could not be changed" in page and "already active in cloud" in page


def test_run_change_form_saves_through_the_write_path(admin_client, run):
    response = admin_client.post(
        f"/admin/taskruns/taskrun/{run.pk}/change/",
        {
            "stage": "review",
            "branch": "fix/x",
            "error_message": "",
            "events-TOTAL_FORMS": 0,
            "events-INITIAL_FORMS": 0,
        },
        follow=True,
    )
    assert response.status_code == 200
    row = TaskRun.objects.get(pk=run.pk)
    assert (row.stage, row.branch, row.status) == ("review", "fix/x", "queued")
    assert row.version == run.version + 1


def test_run_page_shows_state_as_readable_json(admin_client, run):
    TaskRun.objects.filter(pk=run.pk).update(state={"plan": ["a", "b"], "ü": 1})
    page = admin_client.get(f"/admin/taskruns/taskrun/{run.pk}/change/").content.decode()
    assert "<pre" in page and "&quot;plan&quot;: [" in page and "ü" in page


def test_run_list_filters_and_searches(admin_client, task, run):
    other = TaskRun.objects.create(task=task, project=task.project, status="failed", branch="feature/needle")
    listing = admin_client.get("/admin/taskruns/taskrun/", {"status__exact": "failed"}).content.decode()
    assert str(other.pk) in listing and str(run.pk) not in listing
    assert str(other.pk) in admin_client.get("/admin/taskruns/taskrun/", {"q": "needle"}).content.decode()
    by_id = admin_client.get("/admin/taskruns/taskrun/", {"q": str(run.pk)}).content.decode()
    assert str(run.pk) in by_id and str(other.pk) not in by_id
    assert str(run.pk) in admin_client.get("/admin/taskruns/taskrun/", {"q": task.title}).content.decode()


def test_runs_cannot_be_deleted_in_the_admin(admin_client, run):
    assert admin_client.get(f"/admin/taskruns/taskrun/{run.pk}/delete/").status_code == 403


def test_task_page_lists_its_runs_inline(admin_client, task, run):
    page = admin_client.get(f"/admin/taskruns/task/{task.pk}/change/").content.decode()
    assert str(run.pk) in page


def test_new_api_key_is_shown_once_and_works(admin_client, user, run):
    response = admin_client.post(
        "/admin/taskruns/apikey/add/", {"user": user.pk, "name": "ci agent", "projects": []}, follow=True
    )
    raw = re.search(r"trk_[A-Za-z0-9_-]{43}", response.content.decode()).group(0)
    key = ApiKey.objects.get(name="ci agent")
    assert key.key_hash == hash_key(raw) and key.prefix == raw[: len(key.prefix)]
    assert raw not in admin_client.get(f"/admin/taskruns/apikey/{key.pk}/change/").content.decode()
    assert admin_client.get(run_url(run), HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200


def test_revoke_action_disables_keys(admin_client, user, run):
    from taskruns.keys import issue_key

    key, raw = issue_key(user, "old")
    admin_client.post("/admin/taskruns/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk]})
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    admin_client.logout()
    assert admin_client.get(run_url(run), HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401


def test_the_key_list_shows_revocation_to_the_second(admin_client, user):
    from taskruns.keys import issue_key

    key, _raw = issue_key(user, "retired")
    admin_client.post("/admin/taskruns/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk]})
    revoked_at = ApiKey.objects.get(pk=key.pk).revoked_at
    page = admin_client.get("/admin/taskruns/apikey/").content.decode()
    assert "State (UTC)" in page
    assert "revoked " + revoked_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") in page


def test_the_key_list_searches_by_the_user_models_login_field(admin_client, user):
    api_key = ApiKey.objects.create(user=user, name="agent", prefix="trk_search01", key_hash="x" * 64)
    response = admin_client.get("/admin/taskruns/apikey/", {"q": user.get_username()})
    assert response.status_code == 200
    assert api_key.prefix in response.content.decode()


def test_a_key_can_be_given_an_expiry_in_the_admin(admin_client, user):
    response = admin_client.post(
        "/admin/taskruns/apikey/add/",
        {"user": user.pk, "name": "expiring", "expires_at_0": "2030-06-01", "expires_at_1": "12:00:00"},
        follow=True,
    )
    assert response.status_code == 200
    assert ApiKey.objects.get(name="expiring").expires_at.year == 2030
