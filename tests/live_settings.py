"""The demo settings, with ``TASKRUNS`` keys changed from the environment (``TASKRUNS_OVERRIDES``,
JSON): how a live-server test sets a short lock limit or database deadline (tests.live)."""

import json
import os

from config.settings import *  # noqa: F403

TASKRUNS = {**TASKRUNS, **json.loads(os.environ.get("TASKRUNS_OVERRIDES", "{}"))}  # noqa: F405
