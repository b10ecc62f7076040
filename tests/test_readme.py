"""The README's settings block says what taskruns.conf does: every key, with its default."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from taskruns.conf import DEFAULTS

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_settings_block() -> dict:
    match = re.search(r"```python\nTASKRUNS = (\{.*?\n\})\n```", README.read_text(), re.DOTALL)
    assert match, "the README has no ```python TASKRUNS = {…}``` block"
    return ast.literal_eval(match.group(1))


def test_the_readme_lists_every_setting_with_its_default():
    assert readme_settings_block() == DEFAULTS


def test_the_readme_names_every_system_check_it_can_raise():
    text = README.read_text()
    source = "\n".join(path.read_text() for path in (README.parent / "taskruns").glob("checks.py"))
    for check_id in sorted(set(re.findall(r'id="taskruns\.([EWI]\d{3})"', source))):
        assert f"`{check_id}`" in text or f"`taskruns.{check_id}`" in text, check_id
