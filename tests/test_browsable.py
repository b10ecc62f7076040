"""The browsable API's forms work as offered (taskruns.browsable): each one, submitted unchanged
the way DRF's page submits it, is accepted; a refused submit shows what was typed again, and the
stored row is checked each time."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from taskruns import updates
from taskruns.models import Project, Task, TaskRun

from .conftest import run_url, runs_url, stored, tasks_url

pytestmark = pytest.mark.django_db

HTML = "text/html; q=1.0, */*"  # what DRF's ajax-form.js asks for


class RawDataForms(HTMLParser):
    """The page's raw-data forms: for each, the methods of its buttons and its content."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self._in_content = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"methods": [], "content": None, "method": attrs.get("method")})
        elif tag == "textarea" and attrs.get("name") == "_content":
            self._in_content = True
            self.forms[-1]["content"] = ""
        elif tag == "button" and self.forms and attrs.get("data-method"):
            self.forms[-1]["methods"].append(attrs["data-method"])

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._in_content = False

    def handle_data(self, data):
        if self._in_content:
            self.forms[-1]["content"] += data


def offered(response, method: str) -> str:
    """The content of the page's raw-data form for ``method``."""
    assert response["Content-Type"].startswith("text/html"), response.content[:300]
    parser = RawDataForms()
    parser.feed(response.content.decode())
    for form in parser.forms:
        if form["content"] is not None and (method in form["methods"] or form["method"] == method):
            return form["content"].strip()
    raise AssertionError(f"no {method} form on the page")


def submit(client, method: str, url: str, content: str):
    """What DRF's page does with a raw-data form: the textarea as the body, HTML asked back."""
    return client.generic(method, url, content, content_type="application/json", HTTP_ACCEPT=HTML)


@pytest.fixture
def browser(client, user):
    client.force_login(user)
    return client


def patched_unchanged(browser, run: TaskRun) -> dict:
    """Submit the run page's PATCH form as offered; the stored row after it."""
    before = stored(run)
    content = offered(browser.get(run_url(run), HTTP_ACCEPT=HTML), "PATCH")
    response = submit(browser, "PATCH", run_url(run), content)
    assert response.status_code == 200, response.content[:2000]
    after = stored(run)
    for field in ("status", "environment", "state", "output", "stage", "branch", "error_message"):
        assert after[field] == before[field], field
    assert after["version"] == before["version"] + 1
    return json.loads(content)


def test_a_local_runs_patch_form_is_accepted_as_offered(browser, run):
    form = patched_unchanged(browser, run)
    assert form["status"] == "queued"
    assert form["environment"] == "local"


def test_a_cloud_runs_patch_form_does_not_offer_environment(browser, task):
    run = updates.create_run(task, environment="cloud", stage="build", branch="fix/flaky")
    form = patched_unchanged(browser, run)
    assert "environment" not in form
    assert form["stage"] == "build" and form["branch"] == "fix/flaky"


def test_a_finished_runs_patch_form_offers_neither_status_nor_environment(browser, api, task):
    run = updates.create_run(task, environment="cloud")
    assert api.patch(run_url(run), {"status": "completed"}).status_code == 200
    form = patched_unchanged(browser, run)
    assert "status" not in form and "environment" not in form


def test_the_state_is_offered_empty_so_protected_keys_are_not_sent_back(browser, task, settings):
    settings.TASKRUNS = {**settings.TASKRUNS, "PROTECTED_STATE_KEYS": ["sandbox_id"]}
    run = updates.create_run(task)
    TaskRun.objects.filter(pk=run.pk).update(state={"sandbox_id": "sb-1", "step": 2})
    assert patched_unchanged(browser, run)["state"] == {}
    assert stored(run)["state"] == {"sandbox_id": "sb-1", "step": 2}


def test_the_run_create_form_is_accepted_as_offered(browser, task):
    content = offered(browser.get(runs_url(task), HTTP_ACCEPT=HTML), "POST")
    response = submit(browser, "POST", runs_url(task), content)
    assert response.status_code == 201, response.content[:2000]
    created = TaskRun.objects.get(task=task)
    assert (created.status, created.environment, created.state) == ("queued", "local", {})


def test_the_task_forms_are_accepted_as_offered(browser, project):
    content = offered(browser.get(tasks_url(project.pk), HTTP_ACCEPT=HTML), "POST")
    response = submit(browser, "POST", tasks_url(project.pk), content)
    assert response.status_code == 201, response.content[:2000]
    task = Task.objects.get(project=project)
    assert task.title == "New task"
    url = f"{tasks_url(project.pk)}{task.pk}/"
    content = offered(browser.get(url, HTTP_ACCEPT=HTML), "PATCH")
    assert set(json.loads(content)) == {"title", "description", "repository", "json_schema"}
    assert submit(browser, "PATCH", url, content).status_code == 200
    task.refresh_from_db()
    assert task.title == "New task"


@pytest.mark.parametrize(
    "typed",
    [
        '{\n    "status": "finished",\n    "state": {"step": 3}\n}',
        '{"status": "in_progress", "state": ',  # not even JSON
        '{"state_remove_keys": []}',
    ],
)
def test_a_refused_submit_keeps_what_was_typed(browser, run, typed):
    before = stored(run)
    response = submit(browser, "PATCH", run_url(run), typed)
    assert response.status_code == 400
    assert offered(response, "PATCH") == typed.strip()
    assert stored(run) == before


def test_after_an_accepted_submit_the_form_is_offered_afresh(browser, run):
    response = submit(browser, "PATCH", run_url(run), '{"status": "in_progress", "stage": "plan"}')
    assert response.status_code == 200
    form = json.loads(offered(response, "PATCH"))
    assert (form["status"], form["stage"]) == ("in_progress", "plan")


def test_the_run_action_forms_are_accepted_as_offered(browser, run):
    """set_output offers the current output (null is refused), append_log an entry to fill in
    (an empty list is refused), cancel an empty reason."""
    content = offered(browser.get(run_url(run, "set_output"), HTTP_ACCEPT=HTML), "PATCH")
    assert json.loads(content) == {"output": {}}
    assert submit(browser, "PATCH", run_url(run, "set_output"), content).status_code == 200
    assert stored(run)["output"] == {}
    content = offered(browser.get(run_url(run, "append_log"), HTTP_ACCEPT=HTML), "POST")
    assert submit(browser, "POST", run_url(run, "append_log"), content).status_code == 200
    assert stored(run)["log_entry_count"] == 1
    content = offered(browser.get(run_url(run, "cancel"), HTTP_ACCEPT=HTML), "POST")
    assert submit(browser, "POST", run_url(run, "cancel"), content).status_code == 200
    assert stored(run)["status"] == "cancelled"


def test_an_out_of_scope_action_page_offers_nothing_of_the_run(browser, task):
    other = updates.create_run(Task.objects.create(project=Project.objects.create(name="Other"), title="x"))
    TaskRun.objects.filter(pk=other.pk).update(output={"secret": "not yours"})
    response = browser.get(run_url(other, "set_output"), HTTP_ACCEPT=HTML)
    assert response.status_code == 405  # as for any id: the method, before the run is looked up
    assert "not yours" not in response.content.decode()
