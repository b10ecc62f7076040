"""ASGI entry point of the demo project: every route, the app's live streams included.

Served by uvicorn (``make run``; ``uvicorn config.asgi:application --workers N`` in production).
Request bodies on the API are limited as they arrive (taskruns.asgi.BodyLimit), since Django's
ASGI handler would otherwise read any body whole before a view could refuse it. With DEBUG on,
static files (the admin's, Swagger UI's) are served too, as runserver does.
"""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_application = get_asgi_application()

if settings.DEBUG:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_application = ASGIStaticFilesHandler(django_application)

from taskruns.asgi import BodyLimit  # noqa: E402  (after Django is set up)

application = BodyLimit(django_application, prefix="/api/")
