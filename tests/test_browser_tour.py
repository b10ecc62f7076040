"""A newcomer's tour in Chromium (issue 15): the browsable API's forms submitted exactly as offered,
Swagger UI's "Try it out" on a run list and a PATCH, Redoc's rendering of the rules, and the
admin at 1280 pixels — its lists, a bulk action's confirmation and a run's timeline. Every page
is checked for requests leaving the machine, and each screenshot for what it must show."""

from __future__ import annotations

import json

import pytest

from taskruns import updates
from taskruns.admin import TaskRunAdmin
from taskruns.keys import issue_key
from taskruns.models import TaskRun

from .browser import log_in, operator_with_task, snapshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PATCH_BUTTON = '#put-generic-content-form button[data-method="PATCH"]'
POST_BUTTON = "#post-generic-content-form button"


@pytest.fixture
def operator():
    return operator_with_task("Fix the flaky checkout test")


def submit_as_offered(page, button: str, method: str) -> int:
    with page.expect_response(lambda response: response.request.method == method) as answered:
        page.click(button)
    return answered.value.status


def test_the_browsable_api_forms_work_as_offered(page, live_server, operator):
    user, task = operator
    local = updates.create_run(task)
    cloud = updates.create_run(task, environment="cloud", branch="fix/flaky")
    TaskRun.objects.filter(pk=cloud.pk).update(status="in_progress")
    log_in(
        page,
        f"{live_server.url}/api-auth/login/?next={local.get_absolute_url()}",
        "operator",
        "secret-pw",
        local.get_absolute_url(),
    )

    # A local run: its PATCH form, untouched.
    assert submit_as_offered(page, PATCH_BUTTON, "PATCH") == 200
    row = TaskRun.objects.get(pk=local.pk)
    assert (row.status, row.environment, row.state, row.version) == ("queued", "local", {}, local.version + 1)

    # A cloud run in progress: no "environment" offered, so sending it hands nothing off.
    page.goto(f"{live_server.url}{cloud.get_absolute_url()}")
    assert "environment" not in json.loads(page.input_value("#put-generic-content-form textarea"))
    assert submit_as_offered(page, PATCH_BUTTON, "PATCH") == 200
    row = TaskRun.objects.get(pk=cloud.pk)
    assert (row.status, row.environment, row.branch) == ("in_progress", "cloud", "fix/flaky")

    # The run list's create form, untouched.
    runs = local.get_absolute_url().rsplit("/", 2)[0] + "/"
    page.goto(f"{live_server.url}{runs}")
    assert submit_as_offered(page, POST_BUTTON, "POST") == 201
    assert TaskRun.objects.filter(task=task).count() == 3

    # A refused submit shows what was typed, not the template again.
    page.goto(f"{live_server.url}{local.get_absolute_url()}")
    typed = '{"status": "finished", "stage": "typed by hand"}'
    page.fill("#put-generic-content-form textarea", typed)
    assert submit_as_offered(page, PATCH_BUTTON, "PATCH") == 400
    page.wait_for_selector("text=invalid_choice")
    assert page.input_value("#put-generic-content-form textarea") == typed
    assert TaskRun.objects.get(pk=local.pk).stage is None
    snapshot(page, "browsable-api-refused-patch", ["text=invalid_choice", ".response-info"])
    assert page.outside() == []


def test_swagger_try_it_out_on_a_run_list_and_a_patch(page, live_server, operator):
    user, task = operator
    run = updates.create_run(task)
    raw_key = issue_key(user, "swagger")[1]
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info", timeout=30_000)
    page.click(".btn.authorize")
    page.fill("#auth-bearer-value", raw_key)
    page.click(".auth-container:has(#auth-bearer-value) button.authorize")
    page.click(".modal-ux .close-modal")

    def try_it_out(operation_id: str, ids: dict[str, str]):
        operation = page.locator(f"#operations-tasks-{operation_id}")
        operation.locator(".opblock-summary").click()
        operation.locator(".try-out__btn").click()
        for name, value in ids.items():
            operation.locator(f'tr[data-param-name="{name}"] input').fill(value)
        operation.locator(".execute").click()
        status = operation.locator(".live-responses-table .response .response-col_status")
        status.wait_for(timeout=30_000)
        return operation, status.inner_text().strip()

    ids = {"project_id": str(task.project_id), "task_id": str(task.pk)}
    listed, status = try_it_out("tasks_runs_list", ids)
    assert status == "200"
    assert (
        str(run.pk)
        in listed.locator(".live-responses-table .response .response-col_description").inner_text()
    )

    # The PATCH body Swagger UI offers is the first recorded example, sent as it stands.
    patched, status = try_it_out("tasks_runs_partial_update", {**ids, "id": str(run.pk)})
    assert status == "200"
    row = TaskRun.objects.get(pk=run.pk)
    assert (row.status, row.stage, row.state) == (
        "in_progress",
        "plan",
        {"plan": "retry the payment mock", "step": 1},
    )
    patched.locator(".live-responses-table").scroll_into_view_if_needed()
    snapshot(
        page,
        "swagger-try-it-out-patch",
        ["#operations-tasks-tasks_runs_partial_update .live-responses-table .response"],
    )
    assert page.outside() == []


def test_redoc_renders_the_rules_errors_and_examples(page, live_server):
    page.goto(f"{live_server.url}/api/redoc/")
    patch = page.locator('[data-section-id="tag/tasks/operation/tasks_runs_partial_update"]')
    patch.wait_for(timeout=30_000)
    text = patch.inner_text()
    for shown in ("Status transitions in force", "state_append", "invalid_transition", "409", "412"):
        assert shown in text, shown
    patch.locator("h2").first.scroll_into_view_if_needed()
    snapshot(page, "redoc-patch", ['[data-section-id="tag/tasks/operation/tasks_runs_partial_update"] h2'])
    page.wait_for_load_state("networkidle")
    assert page.outside() == []


def test_the_admin_at_1280_pixels(page, live_server, operator):
    user, task = operator
    finished = updates.create_run(task, branch="fix/flaky-checkout")
    active = updates.create_run(task, environment="cloud")
    api = f"{live_server.url}/admin/"
    for status in ("in_progress", "completed"):
        updates.update_run(finished.pk, {"status": status})
    key, _raw = issue_key(user, "retired agent")
    log_in(page, f"{api}login/?next=/admin/", "operator", "secret-pw", "/admin/")

    # The run list: the columns that matter fit the screen.
    page.goto(f"{api}taskruns/taskrun/")
    columns = [f"th.column-{name}" for name in TaskRunAdmin.list_display]
    snapshot(page, "admin-run-list", [*columns, ".taskruns-status"])

    # The key list: revocation included.
    page.goto(f"{api}taskruns/apikey/")
    page.check(f'input[name="_selected_action"][value="{key.pk}"]')
    page.select_option('select[name="action"]', "revoke_keys")
    page.click('button[name="index"]')
    page.wait_for_selector("td.field-key_state >> text=revoked")
    snapshot(
        page,
        "admin-key-list",
        ["th.column-key_state", "td.field-key_state", "th.column-last_used", "th.column-prefix"],
    )

    # A bulk resume asks first: what will change, what the rules refuse.
    page.goto(f"{api}taskruns/taskrun/")
    for run in (finished, active):
        page.check(f'input[name="_selected_action"][value="{run.pk}"]')
    page.select_option('select[name="action"]', "resume_in_cloud")
    page.click('button[name="index"]')
    page.wait_for_selector("#will-refuse")
    assert "1 run will change" in page.inner_text("#will-change")
    assert "1 run will be refused" in page.inner_text("#will-refuse")
    snapshot(page, "admin-bulk-confirmation", ["#will-change", "#will-refuse", 'input[type="submit"]'])
    assert TaskRun.objects.get(pk=finished.pk).status == "completed"  # nothing written yet
    page.click('input[type="submit"]')
    page.wait_for_selector("text=1 run changed")
    assert TaskRun.objects.get(pk=finished.pk).environment == "cloud"

    # The run page: a readable heading and the timeline of its statuses.
    page.goto(f"{api}taskruns/taskrun/{finished.pk}/change/")
    heading = page.inner_text("#content h2")
    assert "Fix the flaky checkout test" in heading and str(finished.pk)[:8] in heading
    snapshot(
        page, "admin-run-page", ["#content h2", ".object-tools a.historylink", ".object-tools a.viewsitelink"]
    )
    page.locator("svg.taskruns-timeline").scroll_into_view_if_needed()
    snapshot(page, "admin-run-timeline", ["svg.taskruns-timeline", ".taskruns-timeline-legend"])
    assert page.outside() == []
