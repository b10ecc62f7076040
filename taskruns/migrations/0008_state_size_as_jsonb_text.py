"""``taskruns_state_within`` measures the state as the rule book does (taskruns.rules.state_size):
the UTF-8 bytes of its jsonb text, ``octet_length(p_state::text)``. Migration 0005 measured the
stored jsonb value (``pg_column_size``), which gave 1,900 bytes where the Python executor counted
1,080 for the same 100 small keys, so the limit fell at different states on the two databases."""

from django.db import migrations

STATE_FUNCTION = "taskruns_state_within"
STATE_TOO_LARGE = "TR413"


def measure(expression: str):
    def create(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        schema_editor.execute(
            f"CREATE OR REPLACE FUNCTION {STATE_FUNCTION}(p_state jsonb, p_max_bytes bigint) "
            "RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN "
            f"IF {expression} > p_max_bytes THEN "
            f"RAISE EXCEPTION 'state larger than % bytes', p_max_bytes USING ERRCODE = '{STATE_TOO_LARGE}'; "
            "END IF; RETURN p_state; END $$",
            params=None,
        )

    return create


class Migration(migrations.Migration):
    dependencies = [("taskruns", "0007_api_key_expiry")]

    operations = [
        migrations.RunPython(measure("octet_length(p_state::text)"), measure("pg_column_size(p_state)"))
    ]
