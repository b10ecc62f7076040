"""Create (or find) the demo user, project, task and run, issue a fresh API key, and print
how to use them. Safe to run any number of times."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.urls import reverse

from taskruns import updates
from taskruns.keys import issue_key, revoke
from taskruns.models import ApiKey, Project, Task

DEMO_KEY_NAME = "demo key"


class Command(BaseCommand):
    help = "Create the demo user, project, task, run and API key, and print how to use them."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print the demo data as one JSON object."
        )

    def handle(self, *args, username, password, base_url, as_json: bool, **options):
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(
                username=username, defaults={"is_staff": True, "is_superuser": True}
            )
            if created:
                user.set_password(password)
                user.save()
            project, _ = Project.objects.get_or_create(name="Demo project")
            project.members.add(user)
            task, _ = Task.objects.alive().get_or_create(
                project=project,
                title="Demo task",
                defaults={
                    "description": "Fix the flaky test in the demo repository.",
                    "repository": "example/demo",
                    "created_by": user,
                },
            )
            run = task.runs.order_by("created_at").first() or updates.create_run(task)
            # Keys are shown once, so each call retires the previous demo key and prints a new one.
            revoke(ApiKey.objects.filter(user=user, name=DEMO_KEY_NAME))
            _, raw_key = issue_key(user, DEMO_KEY_NAME)

        facts = {
            "username": username,
            "password": password if created else "(unchanged)",
            "project_id": project.pk,
            "task_id": str(task.pk),
            "run_id": str(run.pk),
            "api_key": raw_key,
            "run_url": base_url
            + reverse(
                "taskruns:run-detail", kwargs={"project_id": project.pk, "task_id": task.pk, "pk": run.pk}
            ),
        }
        admin_url = base_url + reverse("admin:index")
        if as_json:
            self.stdout.write(json.dumps(facts))
            return
        self.stdout.write(
            "\n".join(
                [
                    "taskruns demo data",
                    f"  admin / browsable API login: {username} / {facts['password']}  ({admin_url})",
                    f"  project id: {project.pk}",
                    f"  task id:    {task.pk}",
                    f"  run id:     {run.pk}",
                    f"  API key:    {raw_key}   (shown once; run this command again for a new one)",
                    "",
                    "Try it:",
                    f"  curl -s -H 'Authorization: Bearer {raw_key}' {facts['run_url']}",
                    f"  curl -s -X PATCH -H 'Authorization: Bearer {raw_key}' \\",
                    "       -H 'Content-Type: application/json' \\",
                    f'       -d \'{{"status": "in_progress", "state": {{"step": 1}}}}\' {facts["run_url"]}',
                    f"  Swagger UI: {base_url}{reverse('swagger-ui')}   Redoc: {base_url}{reverse('redoc')}",
                ]
            )
        )
