"""DRF's browsable API on the app's routes, with forms that work as offered.

DRF pre-fills a PATCH form with the whole object as the update serializer writes it, and a
create form with each field's empty value. On this API both are refused as sent: a cloud run's
form holds ``"environment": "cloud"`` (a PATCH only moves a run to ``local``), a terminal run's
holds its final status, and the create forms hold ``"status": null`` or a blank title. Here a
view offers its own starting content (``offered_form``), made only of fields that make sense for
that resource and accepted unchanged; and after a refused submit the form shows what was typed,
not the template again.
"""

from __future__ import annotations

import json
from typing import Any

from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.request import Request

from .models import TaskRun, TaskRunEnvironment
from .transitions import is_terminal

#: Where the JSON parser leaves the text of a body it read (on the DRF request), so that a form
#: refused as a whole — malformed JSON included — can be shown again as typed.
SUBMITTED_TEXT = "taskruns_submitted_text"


class TaskRunsBrowsableAPIRenderer(BrowsableAPIRenderer):
    """The browsable API, with each raw-data form's content chosen as described above."""

    renderer_context: dict[str, Any]  # set by BrowsableAPIRenderer.render before the forms

    def get_raw_data_form(self, data: Any, view: Any, method: str, request: Request) -> Any:
        form = super().get_raw_data_form(data, view, method, request)
        if form is None:
            return None
        content = self._submitted_text(method)
        if content is None and hasattr(view, "offered_form"):
            instance = getattr(getattr(data, "serializer", None), "instance", None)
            offered = view.offered_form(method, instance)
            if offered is not None:
                content = json.dumps(offered, indent=4, ensure_ascii=False)
        if content is not None:
            form.fields["_content"].initial = content
        return form

    def _submitted_text(self, method: str) -> str | None:
        """The body of this request, when it used this form's method and was refused."""
        request = self.renderer_context.get("request")
        response = self.renderer_context.get("response")
        if request is None or response is None or response.status_code < 400 or request.method != method:
            return None
        text: str | None = getattr(request, SUBMITTED_TEXT, None)
        return text


def run_patch_form(run: TaskRun) -> dict[str, Any]:
    """A PATCH a person can send as offered: the run's current values of the fields they may
    change, which change nothing until edited.

    A terminal run's status and environment are final, so neither is offered; nor is
    ``environment`` on a cloud run (``local`` would hand it off, ``cloud`` is refused). ``state``
    is offered empty (merging nothing) rather than the stored state, which may hold protected
    keys a PATCH may not name; ``output`` is left out for the same size reason."""
    form: dict[str, Any] = {}
    if not is_terminal(run.status):
        form["status"] = run.status
    form.update(stage=run.stage, branch=run.branch, error_message=run.error_message, state={})
    if run.environment == TaskRunEnvironment.LOCAL and not is_terminal(run.status):
        form["environment"] = TaskRunEnvironment.LOCAL
    return form
