"""A person in a browser: log in, PATCH a run through DRF's browsable API, then cancel it with an
admin action. Headless Debian Chromium driven by Playwright, against a live server."""

from __future__ import annotations

import json
import os

import pytest

from taskruns import updates
from taskruns.models import TaskRun

from .browser import operator_with_task

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo_run():
    _user, task = operator_with_task("Browser task")
    return updates.create_run(task)


def test_login_patch_in_browsable_api_and_cancel_in_admin(transactional_db, page, live_server, demo_run):
    run_path = demo_run.get_absolute_url()
    page.goto(f"{live_server.url}/api-auth/login/?next={run_path}")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "secret-pw")
    page.click("#submit-id-submit, input[type=submit], button[type=submit]")
    page.wait_for_url(f"**{run_path}")

    page.fill(
        "#id__content", json.dumps({"status": "in_progress", "stage": "browser", "state": {"via": "html"}})
    )
    with page.expect_response(lambda response: response.request.method == "PATCH") as patched:
        page.click('button[data-method="PATCH"]')
    assert patched.value.status == 200
    page.wait_for_selector("text=browser")  # the page now shows the patched run
    row = TaskRun.objects.get(pk=demo_run.pk)
    assert (row.status, row.stage, row.state) == ("in_progress", "browser", {"via": "html"})
    assert row.version == demo_run.version + 1

    page.goto(f"{live_server.url}/admin/taskruns/taskrun/")
    page.check(f'input[name="_selected_action"][value="{demo_run.pk}"]')
    page.select_option('select[name="action"]', "mark_cancelled")
    page.click('button[name="index"]')
    page.wait_for_selector("text=Are you sure?")  # the confirmation lists what will change
    page.click('input[type="submit"]')
    page.wait_for_selector("text=1 run changed.")
    row = TaskRun.objects.get(pk=demo_run.pk)
    assert row.status == "cancelled" and row.completed_at is not None
    if os.environ.get("TASKRUNS_SCREENSHOTS"):
        page.screenshot(path=os.environ["TASKRUNS_SCREENSHOTS"])


def test_the_admin_live_page_shows_an_api_patch_without_reloading(page, tmp_path):
    """The admin's live page, served by uvicorn: a PATCH and a log entry made through the API
    appear in place (the page is not reloaded), and the page asks nothing of any other host."""
    from .live import call, serve_demo

    database = tmp_path / "db.sqlite3"
    with serve_demo(f"sqlite:///{database}", {"DJANGO_DEBUG": "1"}, server="uvicorn") as app:
        base = app["base"]
        live = f"/admin/taskruns/taskrun/{app['run_id']}/live/"
        page.goto(f"{base}/admin/login/?next={live}")
        page.fill("#id_username", app["username"])
        page.fill("#id_password", app["password"])
        page.click("input[type=submit]")
        page.wait_for_url(f"**{live}")
        page.wait_for_function("document.getElementById('live-connection').textContent === 'Live'")
        page.evaluate("window.notReloaded = true")

        patched = call("PATCH", app["run_url"], app["api_key"], {"stage": "seen-live", "state": {"step": 7}})
        assert patched.status == 200
        logged = call(
            "POST", f"{app['run_url']}append_log/", app["api_key"], {"entries": [{"line": "hello"}]}
        )
        assert logged.status == 200
        page.wait_for_function(
            "document.getElementById('live-stage').textContent === 'seen-live'", timeout=30_000
        )
        page.wait_for_function(
            "document.getElementById('live-log').textContent.includes('hello')", timeout=30_000
        )
        assert '"step": 7' in page.text_content("#live-state")
        assert page.text_content("#live-version") == str(json.loads(patched.body)["version"])
        assert page.evaluate("window.notReloaded") is True
        artifacts = os.path.join(os.path.dirname(__file__), "artifacts")
        os.makedirs(artifacts, exist_ok=True)
        page.screenshot(path=os.path.join(artifacts, "admin-live-page.png"), full_page=True)
    assert page.outside() == []


@pytest.mark.parametrize(
    ("path", "rendered"), [("/api/redoc/", "text=API docs by Redocly"), ("/api/docs/", ".swagger-ui .info")]
)
def test_the_api_docs_render_without_any_outside_request(transactional_db, page, live_server, path, rendered):
    """Redoc and Swagger UI come from local assets (drf-spectacular-sidecar); nothing they load
    leaves the server — Redoc's own footer logo from its CDN included (config/templates)."""
    page.goto(f"{live_server.url}{path}")
    page.wait_for_selector(rendered, timeout=30_000)
    page.wait_for_load_state("networkidle")
    assert page.outside() == []
