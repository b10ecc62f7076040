"""Signals the app sends for the host, each only after the write commits and only on a change.

Receivers run through ``send_robust``: a failing receiver is logged and never turns a committed
write into an error response.
"""

from django.dispatch import Signal

#: A run was created. Arguments: ``run``.
run_created = Signal()

#: A run's status changed. Arguments: ``run``, ``old_status``, ``new_status``.
run_status_changed = Signal()

#: A run's environment changed, e.g. a cloud run handed off to a local machine (so the host can
#: stop its cloud worker). Arguments: ``run``, ``old_environment``, ``new_environment``.
run_environment_changed = Signal()

#: A run was resumed in cloud through the ``resume_in_cloud`` action. Arguments: ``run``.
run_resumed_in_cloud = Signal()

#: An executor was asked to stop an in-progress run (``cancel``); the run is still in progress
#: until its executor ends it. Arguments: ``run``.
run_cancel_requested = Signal()

#: The reaper ended a stale run (taskruns.reaper): ``run.error_code`` says why
#: (``heartbeat_timeout`` or ``queued_timeout``). Sent besides ``run_status_changed``, so a host
#: can stop a cloud worker that may still be alive. Arguments: ``run``.
run_reaped = Signal()
