"""Each run counts its log entries (TaskRun.log_entry_count), filled in here for existing logs."""

from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery


def count_existing_entries(apps, schema_editor):
    TaskRun = apps.get_model("taskruns", "TaskRun")
    TaskRunLogEntry = apps.get_model("taskruns", "TaskRunLogEntry")
    counts = (
        TaskRunLogEntry.objects.filter(run=OuterRef("pk"))
        .order_by()
        .values("run")
        .annotate(entries=Count("pk"))
        .values("entries")
    )
    TaskRun.objects.filter(pk__in=TaskRunLogEntry.objects.values("run")).update(
        log_entry_count=Subquery(counts)
    )


class Migration(migrations.Migration):
    dependencies = [("taskruns", "0005_postgres_functions")]

    operations = [
        migrations.AddField(
            model_name="taskrun",
            name="log_entry_count",
            field=models.PositiveIntegerField(default=0, editable=False, verbose_name="log entries"),
        ),
        migrations.RunPython(count_existing_entries, migrations.RunPython.noop),
    ]
