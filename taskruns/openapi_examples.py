"""Examples in the schema, taken from a real run through the API.

``openapi_examples.json`` holds, per operation id, request bodies and the answers they got, as
recorded by ``make examples`` (tests/test_schema_examples.py drives a run from creation to its
end and back into cloud, and checks on every test run that the API still answers them alike).
Error examples are left out when a host renders the app's errors with its own handler, whose
shape they would not show.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from .openapi_errors import renders_own_errors

EXAMPLES_FILE = Path(__file__).with_name("openapi_examples.json")


@cache
def recorded() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(EXAMPLES_FILE.read_text(encoding="utf-8"))
    return loaded


def attach_examples(operation: dict[str, Any]) -> None:
    """Put the recorded examples of this operation on its request body and responses."""
    examples = recorded().get(operation["operationId"])
    if not examples:
        return
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None and "request" in examples:
        body["examples"] = examples["request"]
    own_errors = renders_own_errors()
    for status, named in examples.get("responses", {}).items():
        if int(status) >= 400 and not own_errors:
            continue
        content = operation["responses"].get(status, {}).get("content", {}).get("application/json")
        if content is not None:
            content["examples"] = named
