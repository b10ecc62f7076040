"""state and output become StoredJSONFields: the same jsonb/JSON columns, decoded on first read
in Python (taskruns.storedjson). Nothing changes in the database, so only the migration state
is altered (SQLite would otherwise rebuild the table for nothing)."""

from django.db import migrations

import taskruns.storedjson


class Migration(migrations.Migration):
    dependencies = [("taskruns", "0003_lz4_json_compression")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="taskrun",
                    name="output",
                    field=taskruns.storedjson.StoredJSONField(blank=True, null=True, verbose_name="output"),
                ),
                migrations.AlterField(
                    model_name="taskrun",
                    name="state",
                    field=taskruns.storedjson.StoredJSONField(blank=True, default=dict, verbose_name="state"),
                ),
            ]
        )
    ]
