"""Quotas and safe task schemas (design §11).

- ``TaskRun.log_byte_count``: the bytes of a run's log entries, as compact JSON, bounded by
  ``TASKRUNS["LOG_MAX_BYTES_PER_RUN"]``; existing logs are counted here.
- ``Task.json_schema`` is checked by taskruns.jsonschemas.check_schema (also in the admin).
- ``taskruns_output_within``: the output-size check of the one-statement PATCH, the same measure
  as ``taskruns_state_within`` (migration 0008) with its own SQLSTATE, ``TR414``.

On SQLite, adding a NOT NULL column rebuilds the table, which drops its triggers: the change-feed
triggers of migration 0010 are made again after it (any later migration that adds such a column
must do the same; tests/test_feed.py fails without them).
"""

import importlib
import json

from django.db import migrations, models

import taskruns.jsonschemas

OUTPUT_FUNCTION = "taskruns_output_within"
OUTPUT_TOO_LARGE = "TR414"


def create_output_function(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE OR REPLACE FUNCTION {OUTPUT_FUNCTION}(p_output jsonb, p_max_bytes bigint) "
        "RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN "
        "IF octet_length(p_output::text) > p_max_bytes THEN "
        f"RAISE EXCEPTION 'output larger than % bytes', p_max_bytes USING ERRCODE = '{OUTPUT_TOO_LARGE}'; "
        "END IF; RETURN p_output; END $$",
        params=None,
    )


def drop_output_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {OUTPUT_FUNCTION}(jsonb, bigint)", params=None)


def count_log_bytes(apps, schema_editor):
    # The measure of taskruns.rules.log_entry_size, frozen here as migrations must be.
    TaskRun = apps.get_model("taskruns", "TaskRun")
    TaskRunLogEntry = apps.get_model("taskruns", "TaskRunLogEntry")
    alias = schema_editor.connection.alias
    for run_id in TaskRun.objects.using(alias).filter(log_entry_count__gt=0).values_list("pk", flat=True):
        entries = TaskRunLogEntry.objects.using(alias).filter(run_id=run_id).values_list("entry", flat=True)
        size = sum(
            len(json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode())
            for entry in entries.iterator(chunk_size=2000)
        )
        TaskRun.objects.using(alias).filter(pk=run_id).update(log_byte_count=size)


def remake_sqlite_feed_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    change_feed = importlib.import_module("taskruns.migrations.0010_change_feed")
    change_feed.drop_triggers(apps, schema_editor)
    change_feed.create_triggers(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("taskruns", "0010_change_feed")]

    operations = [
        migrations.AddField(
            model_name="taskrun",
            name="log_byte_count",
            field=models.PositiveBigIntegerField(
                db_default=0, default=0, editable=False, verbose_name="log bytes"
            ),
        ),
        migrations.RunPython(remake_sqlite_feed_triggers, migrations.RunPython.noop),
        migrations.RunPython(count_log_bytes, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="task",
            name="json_schema",
            field=models.JSONField(
                blank=True,
                help_text="JSON Schema that a run's output must match.",
                null=True,
                validators=[taskruns.jsonschemas.check_schema],
                verbose_name="output JSON schema",
            ),
        ),
        migrations.RunPython(create_output_function, drop_output_function),
    ]
