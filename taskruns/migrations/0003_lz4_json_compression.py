"""Compress runs' large JSON values (state, output) with LZ4 instead of pglz on PostgreSQL.

Every write to a run rewrites its whole state, and a busy run's state grows to tens of
kilobytes, so TOAST compression is paid on each PATCH: LZ4 compresses several times faster than
PostgreSQL's default pglz. It needs PostgreSQL 14 or later built with LZ4 (the PGDG and Debian
packages are); elsewhere this migration changes nothing. It applies to values written from now
on; existing values are read either way.
"""

from django.db import migrations

COLUMNS = ("state", "output")


def _set_compression(apps, schema_editor, method: str) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql" or connection.pg_version < 140000:
        return
    table = schema_editor.quote_name(apps.get_model("taskruns", "TaskRun")._meta.db_table)
    for column in COLUMNS:
        # A server built without LZ4 refuses it (feature_not_supported): keep its default then.
        schema_editor.execute(
            "DO $$ BEGIN "
            f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}; "
            "EXCEPTION WHEN feature_not_supported THEN NULL; END $$"
        )


def use_lz4(apps, schema_editor):
    _set_compression(apps, schema_editor, "lz4")


def use_default(apps, schema_editor):
    _set_compression(apps, schema_editor, "default")


class Migration(migrations.Migration):
    dependencies = [("taskruns", "0002_run_logs_and_events")]

    operations = [migrations.RunPython(use_lz4, use_default, elidable=True)]
