from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo project's own app: the ``taskruns_demo`` command, which is not in the wheel
    (it creates a demo/demo superuser, which no host's database should get by accident)."""

    name = "config.demo"
    label = "taskruns_demo_project"
