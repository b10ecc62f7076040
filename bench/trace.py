"""Which of the app's functions and modules one state-merge PATCH passes through, on PostgreSQL.

Usage (from the project root, PostgreSQL on 127.0.0.1):

    .venv/bin/python -m bench.trace

It (re)creates the database ``taskruns_trace``, makes a member, a project, a task, a run and a key,
sends five PATCHes to warm the process (imports, the key's last use, prepared statements), then
traces the sixth with ``sys.setprofile`` and prints every distinct function of ``taskruns/`` it
called (comprehensions and lambdas counted with the function that holds them), by module, and the
totals: a measure of how much of the app a reader must follow to understand a PATCH. It uses only
the app's public pieces, so the same script traces older code.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path

DATABASE = "taskruns_trace"
ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def main() -> int:
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE}")

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    from taskruns import updates
    from taskruns.keys import issue_key
    from taskruns.models import Project, Task

    user = get_user_model().objects.create_user("tracer")
    project = Project.objects.create(name="Trace")
    project.members.add(user)
    task = Task.objects.create(project=project, title="Trace", created_by=user)
    run = updates.create_run(task)
    raw_key = issue_key(user, "trace")[1]
    client = Client(headers={"Authorization": f"Bearer {raw_key}"})
    url = f"/api/projects/{project.pk}/tasks/{task.pk}/runs/{run.pk}/"

    def patch(number: int) -> int:
        body = f'{{"state": {{"k{number}": {number}}}}}'
        return client.patch(url, body, content_type="application/json").status_code

    for number in range(5):
        assert patch(number) == 200
    app = str(Path(__import__("taskruns").__file__).parent)
    called: dict[str, set[str]] = defaultdict(set)

    def profile(frame, event, arg):
        # Comprehensions and lambdas are part of the function that holds them.
        if event == "call" and frame.f_code.co_filename.startswith(app) and "<" not in frame.f_code.co_name:
            module = Path(frame.f_code.co_filename).relative_to(Path(app).parent).with_suffix("")
            called[str(module).replace("/", ".")].add(frame.f_code.co_qualname)

    sys.setprofile(profile)
    try:
        status = patch(5)
    finally:
        sys.setprofile(None)
    assert status == 200
    modules = sorted(name for name in Path(app).glob("*.py"))
    for module in sorted(called):
        print(f"{module}: {', '.join(sorted(called[module]))}")
    total = sum(len(functions) for functions in called.values())
    print(f"\n{total} functions in {len(called)} of the app's {len(modules)} modules (taskruns/*.py)")
    print("Rerun: .venv/bin/python -m bench.trace")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
