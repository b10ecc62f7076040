"""The demo settings, serving the two baselines beside the app, tuned as a deployment would be."""

import json
import os

from config.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "bench.urls"
LOGGING = {"version": 1, "disable_existing_loggers": True}

# The load generator sends thousands of PATCHes a second with one key, far past the app's
# default rates: the load bench measures the write path with the throttles off, and
# bench.safety measures what the throttles and the wait limits cost a PATCH.
TASKRUNS = {**TASKRUNS, "THROTTLE_RATES": {"api_key": None, "user": None, "failed_authentication": None}}  # noqa: F405
# A bench may change app settings for the server it starts (bench/stream.py turns a setting off
# to measure what it buys), as JSON.
TASKRUNS.update(json.loads(os.environ.get("BENCH_TASKRUNS", "{}")))
