"""The run lifecycle (design §12): cancel requests, heartbeats, the reaper's columns and indexes.

A run that existed before this migration entered its current status at some unknown time no
later than its last write: ``status_changed_at`` starts as ``updated_at``, so a reaper counts a
silent old run from its last write, never from the migration."""

import django.utils.timezone
from django.db import migrations, models
from django.db.models import F


def status_changed_at_from_last_write(apps, schema_editor):
    runs = apps.get_model("taskruns", "TaskRun").objects.using(schema_editor.connection.alias)
    runs.update(status_changed_at=F("updated_at"))


class Migration(migrations.Migration):

    dependencies = [
        ('taskruns', '0008_state_size_as_jsonb_text'),
    ]

    operations = [
        migrations.AddField(
            model_name='taskrun',
            name='cancel_requested_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='cancel requested at'),
        ),
        migrations.AddField(
            model_name='taskrun',
            name='error_code',
            field=models.CharField(blank=True, max_length=40, null=True, verbose_name='error code'),
        ),
        migrations.AddField(
            model_name='taskrun',
            name='heartbeat_timeout',
            field=models.DurationField(blank=True, help_text='An in-progress run silent for longer than this is reaped (failed with error code heartbeat_timeout). Empty: never reaped.', null=True, verbose_name='heartbeat timeout'),
        ),
        migrations.AddField(
            model_name='taskrun',
            name='last_heartbeat_at',
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name='last heartbeat at'),
        ),
        migrations.AddField(
            model_name='taskrun',
            name='status_changed_at',
            field=models.DateTimeField(default=django.utils.timezone.now, help_text='When the run entered its current status.', verbose_name='status changed at'),
        ),
        migrations.RunPython(status_changed_at_from_last_write, migrations.RunPython.noop, elidable=True),
        migrations.AddField(
            model_name='taskrunevent',
            name='note',
            field=models.CharField(blank=True, db_default='', default='', help_text='e.g. why it was cancelled', max_length=500, verbose_name='note'),
        ),
        migrations.AlterField(
            model_name='taskrunevent',
            name='kind',
            field=models.CharField(choices=[('created', 'created'), ('status_changed', 'status changed'), ('environment_changed', 'environment changed'), ('resumed_in_cloud', 'resumed in cloud'), ('output_set', 'output set'), ('cancel_requested', 'cancel requested'), ('reaped', 'reaped')], max_length=30, verbose_name='kind'),
        ),
        migrations.AddIndex(
            model_name='taskrun',
            index=models.Index(condition=models.Q(('heartbeat_timeout__isnull', False), ('status', 'in_progress')), fields=['status_changed_at'], name='taskruns_run_reap_in_progress'),
        ),
        migrations.AddIndex(
            model_name='taskrun',
            index=models.Index(condition=models.Q(('status', 'queued')), fields=['status_changed_at'], name='taskruns_run_reap_queued'),
        ),
    ]
