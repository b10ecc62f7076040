"""Settings of the demo/development project around the taskruns app.

SQLite by default; PostgreSQL (or any database) when DATABASE_URL is set.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from taskruns.spectacular_settings import ENUM_NAME_OVERRIDES

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "taskruns-demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "taskruns",
    "config.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "config" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def prepare_threshold(value: str) -> int | None:
    """psycopg's prepare_threshold from an environment value: a whole number, or off."""
    if value.strip().lower() in ("", "off", "none", "0"):
        return None
    return int(value)


DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DJANGO_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Fail fast (a 503 from the app) rather than hang when the server does not answer.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 3)
    # Let psycopg prepare a statement after its fifth run on a connection (the demo talks to
    # PostgreSQL directly). Django turns this off by default for the sake of connection
    # poolers, and binds its own queries on the client, so this only reaches the app's hot
    # statements (taskruns.rows.fetch_one). DJANGO_DB_PREPARE_THRESHOLD=off turns it off, as
    # it must be behind a transaction-mode pooler (PgBouncer older than 1.21, or without
    # max_prepared_statements); the production profile has it off unless told otherwise.
    DATABASES["default"]["OPTIONS"].setdefault(
        "prepare_threshold", prepare_threshold(os.environ.get("DJANGO_DB_PREPARE_THRESHOLD", "5"))
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Take SQLite's write lock when a transaction starts: concurrent writers then wait their
    # turn instead of failing with "database is locked" on lock upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 20})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

LOGIN_URL = "rest_framework:login"
LOGIN_REDIRECT_URL = "/api/"

# Nothing of taskruns goes here: the app's routes take their authentication, permissions and
# error rendering from TASKRUNS (taskruns.conf), whatever the host's REST_FRAMEWORK says.
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "taskruns API",
    "DESCRIPTION": "Runs of coding-agent tasks, with PostHog's task-run API contract.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The app's enum component names (PostHog's): see taskruns.spectacular_settings.
    "ENUM_NAME_OVERRIDES": ENUM_NAME_OVERRIDES,
}

# A cache every server process on this machine shares, so the app's request rates (and the demo's
# login throttle) hold under a multi-process server; a per-process memory cache would not
# (taskruns.W007). A deployment on several machines points it at Redis or Memcached.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": os.environ.get("DJANGO_CACHE_DIR", str(BASE_DIR / ".cache" / "django")),
    }
}

TASKRUNS = {
    "PROTECTED_STATE_KEYS": [],
    "RESUME_CLEAR_STATE_KEYS": ["sandbox_url"],
    "CLOUD_STARTER": None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"taskruns": {"handlers": ["console"], "level": "INFO"}},
}
