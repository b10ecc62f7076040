"""Two PostgreSQL functions used by the one-statement PATCH and the read of a run.

``taskruns_may_reach``: whether a caller may reach a task's runs under the default access
policy (taskruns.access.ProjectMembershipPolicy): the task is live, the caller is a member of
its project, and their API key, if any, is not limited to other projects. Every PATCH and GET
of a run checks this. Written inline, the four lookups are planned again by every statement,
which took about as much of the database's time as the update itself; the queries of a PL/pgSQL
function are planned once per connection. Other databases, and hosts with their own
ACCESS_POLICY, keep the inline SQL (taskruns.access.RunScope.sql).

``taskruns_state_within``: the merged state, or an error (SQLSTATE ``TR413``) when it is larger
than the limit, so that the statement computes the merge once: a condition in the WHERE clause
cannot read the new row, and merging a state of a thousand keys twice cost as much as the rest
of the statement. The error ends the statement before anything is written.
"""

from django.db import migrations

FUNCTION = "taskruns_may_reach"
STATE_FUNCTION = "taskruns_state_within"
STATE_TOO_LARGE = "TR413"


def create_functions(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    project = apps.get_model("taskruns", "Project")
    api_key = apps.get_model("taskruns", "ApiKey")
    tasks = quote(apps.get_model("taskruns", "Task")._meta.db_table)
    members_field = project._meta.get_field("members")
    members = quote(members_field.remote_field.through._meta.db_table)
    # The members table's user column is named after the host's user model (customer_id, …).
    member = quote(members_field.m2m_reverse_name())
    key_projects = quote(api_key._meta.get_field("projects").remote_field.through._meta.db_table)
    # The user id takes the type of the host's user model's key (%TYPE, read when created).
    schema_editor.execute(
        f"CREATE OR REPLACE FUNCTION {FUNCTION}("
        f"p_task uuid, p_project bigint, p_user {members}.{member}%TYPE, p_api_key bigint) "
        "RETURNS boolean LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN "
        f"EXISTS (SELECT 1 FROM {tasks} WHERE id = p_task AND deleted_at IS NULL) "
        f"AND EXISTS (SELECT 1 FROM {members} WHERE project_id = p_project AND {member} = p_user) "
        "AND (p_api_key IS NULL "
        f"OR NOT EXISTS (SELECT 1 FROM {key_projects} WHERE apikey_id = p_api_key) "
        f"OR EXISTS (SELECT 1 FROM {key_projects} WHERE apikey_id = p_api_key AND project_id = p_project)); "
        "END $$",
        params=None,  # no placeholders: the body's "%TYPE" is SQL
    )
    schema_editor.execute(
        f"CREATE OR REPLACE FUNCTION {STATE_FUNCTION}(p_state jsonb, p_max_bytes bigint) "
        "RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN "
        "IF pg_column_size(p_state) > p_max_bytes THEN "
        f"RAISE EXCEPTION 'state larger than % bytes', p_max_bytes USING ERRCODE = '{STATE_TOO_LARGE}'; "
        "END IF; RETURN p_state; END $$",
        params=None,
    )


def drop_functions(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in (FUNCTION, STATE_FUNCTION):
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("taskruns", "0004_run_json_decoded_on_read")]

    operations = [migrations.RunPython(create_functions, drop_functions)]
