"""The foreign host as it was before it adopted taskruns: the baseline its own routes and
schema are compared with (tests/foreign_host/test_host_routes.py)."""

from .settings import *  # noqa: F403

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "taskruns"]  # noqa: F405
ROOT_URLCONF = "tests.foreign_host.host_urls"
SPECTACULAR_SETTINGS = {"TITLE": "Shop API", "COMPONENT_SPLIT_REQUEST": True}
del TASKRUNS  # noqa: F821
