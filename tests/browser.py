"""Headless Debian Chromium for the browser tests, driven by Playwright.

Every page records each request it makes that would leave this machine (the tests fail on any:
no CDN, no font, no logo), and screenshots are taken only after checking that the elements they
are meant to show are on screen, inside the picture.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: The width the admin's lists must fit (issue 15: the columns that matter visible at 1280 px).
VIEWPORT = {"width": 1280, "height": 900}
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def leaves_the_machine(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return False
    return parts.hostname not in LOCAL_HOSTS


def operator_with_task(title: str):
    """A superuser ("operator" / "secret-pw") who is a member of a project with one task."""
    from django.contrib.auth import get_user_model

    from taskruns.models import Project, Task

    user = get_user_model().objects.create_superuser("operator", password="secret-pw")
    project = Project.objects.create(name="Browser project")
    project.members.add(user)
    return user, Task.objects.create(project=project, title=title, created_by=user)


def log_in(page, login_url: str, username: str, password: str, lands_on: str) -> None:
    page.goto(login_url)
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#submit-id-submit, input[type=submit], button[type=submit]")
    page.wait_for_url(f"**{lands_on}")


def snapshot(page, name: str, must_show: list[str]) -> Path:
    """Take ``tests/artifacts/<name>.png`` of the viewport, after checking that each selector of
    ``must_show`` is visible and lies wholly inside it; the picture's size is checked too."""
    viewport = page.viewport_size
    for selector in must_show:
        element = page.locator(selector).first
        element.wait_for(state="visible", timeout=30_000)
        box = element.bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0, selector
        inside = (
            box["x"] >= 0
            and box["y"] >= 0
            and box["x"] + box["width"] <= viewport["width"] + 0.5
            and box["y"] < viewport["height"]
        )
        assert inside, (selector, box, viewport)
        # Not clipped by a scrolling container or covered by another element either.
        on_top = element.evaluate(
            """element => {
                const box = element.getBoundingClientRect();
                const found = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
                return found !== null
                    && (element === found || element.contains(found) || found.contains(element));
            }"""
        )
        if not on_top:
            page.screenshot(path=str(ARTIFACTS / f"{name}-failed.png"))
        assert on_top, (selector, "hidden behind or clipped by another element")
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert (width, height) == (viewport["width"], viewport["height"]), (width, height)
    return path
