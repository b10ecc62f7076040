"""A project that adopts taskruns, as a new adopter's would look: its own custom user model, its
own DRF API (TokenAuthentication, a Bearer scheme of its own, page-number pagination, DRF's
default exception handler, a serializer named ``Task``, ``COMPONENT_SPLIT_REQUEST``), and
taskruns added by the README's "Adding taskruns to an existing project" and nothing else.

    pytest --ds=tests.foreign_host.settings …   (DATABASE_URL for PostgreSQL, else SQLite)
"""

from __future__ import annotations

import dj_database_url

from taskruns.spectacular_settings import ENUM_NAME_OVERRIDES

SECRET_KEY = "foreign-host-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "Europe/Paris"  # not UTC, unlike the demo
ROOT_URLCONF = "tests.foreign_host.urls"
AUTH_USER_MODEL = "shop.Customer"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"  # not the demo's BigAutoField

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "tests.foreign_host.shop",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"
DATABASES = {"default": dj_database_url.config(default="sqlite://:memory:")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 20})

# The host's own API, as it was before taskruns.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "tests.foreign_host.shop.authentication.PartnerBearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 2,
    "DEFAULT_FILTER_BACKENDS": [
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    # Tight enough that the contract tests, run against this host, would be throttled at once
    # if the host's throttles reached the app's routes.
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {"anon": "20/minute", "user": "100/minute"},
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Shop API",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Added by the README's "Adding taskruns to an existing project", pasted as it says. ---
for _app in ["rest_framework", "drf_spectacular", "taskruns"]:
    if _app not in INSTALLED_APPS:
        INSTALLED_APPS.append(_app)

SPECTACULAR_SETTINGS.setdefault("SCHEMA_PATH_PREFIX", "/api")
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {})
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(ENUM_NAME_OVERRIDES)

TASKRUNS = {
    # The contract tests resume runs whose state names a sandbox, as the demo does.
    "RESUME_CLEAR_STATE_KEYS": ["sandbox_url"],
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
