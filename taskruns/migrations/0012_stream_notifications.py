"""Notifications for the live stream (design §13, taskruns.listen).

On PostgreSQL, a trigger sends ``pg_notify('taskruns_run', <run id>)`` from every transaction
that moves a run's version or adds to its log (its log entry count), whoever writes it: the
one-statement PATCH, the transactional actions, the admin, the reaper. PostgreSQL delivers a
notification only when its transaction commits, and folds repeats within one transaction. A
heartbeat (only ``last_heartbeat_at``) notifies nobody. SQLite has no notifications: streams
poll there.
"""

from django.db import migrations

TABLE = "taskruns_taskrun"
FUNCTION = "taskruns_notify_run"
CHANNEL = "taskruns_run"


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"PERFORM pg_notify('{CHANNEL}', NEW.id::text); RETURN NULL; END $$"
    )
    schema_editor.execute(
        f"CREATE TRIGGER taskruns_run_notify AFTER UPDATE ON {TABLE} FOR EACH ROW "
        "WHEN (OLD.version IS DISTINCT FROM NEW.version "
        "OR OLD.log_entry_count IS DISTINCT FROM NEW.log_entry_count) "
        f"EXECUTE FUNCTION {FUNCTION}()"
    )


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP TRIGGER IF EXISTS taskruns_run_notify ON {TABLE}")
    schema_editor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")


class Migration(migrations.Migration):
    dependencies = [("taskruns", "0011_quotas_and_safe_schemas")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
