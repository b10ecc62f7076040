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
