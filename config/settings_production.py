"""Deployment profile of the demo project: `DJANGO_SETTINGS_MODULE=config.settings_production`.

Secrets and hosts come from the environment and are required: a missing one stops start-up
rather than falling back to a demo value. `manage.py check --deploy` is clean with it
(tests/test_production_settings.py).

    DJANGO_SECRET_KEY       required, long and random
    DJANGO_ALLOWED_HOSTS    required, comma-separated host names
    DATABASE_URL            required in practice (PostgreSQL)
    DJANGO_CSRF_TRUSTED_ORIGINS   optional, comma-separated https:// origins
    DJANGO_BEHIND_TLS_PROXY       "1" when a proxy terminates TLS and sets X-Forwarded-Proto
    DJANGO_CONN_MAX_AGE           seconds a database connection is kept (default 60)
    DJANGO_REDIS_URL              redis://… : the cache the request rates are counted in, shared
                                  by every process on every machine (needs the redis package).
                                  Without it, a file cache in DJANGO_CACHE_DIR (default
                                  /var/tmp/taskruns-cache), shared by the processes of one machine.
    DJANGO_DB_PREPARE_THRESHOLD   off (default) or N: prepare the app's hot statements after N
                                  runs on a connection. Only for a direct connection to PostgreSQL
                                  or PgBouncer >= 1.21 with max_prepared_statements; behind a
                                  transaction-mode pooler without it, prepared statements break
                                  (README "Deploying"). taskruns.I001 says which mode is in force.
"""

import os
import sys

from .settings import *  # noqa: F403

REQUIRED = ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS")
if missing := [name for name in REQUIRED if not os.environ.get(name)]:
    # One clear line per missing variable, not a traceback from deep inside Django's start-up.
    sys.exit("\n".join(f"{name} must be set for the production settings ({__name__})." for name in missing))

DEBUG = False
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
ALLOWED_HOSTS = [host.strip() for host in os.environ["DJANGO_ALLOWED_HOSTS"].split(",") if host.strip()]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_SSL_REDIRECT = True
SECURE_HSTS_SECONDS = 60 * 60 * 24 * 365
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if os.environ.get("DJANGO_BEHIND_TLS_PROXY") == "1":
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Persistent connections, checked before reuse so a restarted database costs one 503 at most.
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("DJANGO_CONN_MAX_AGE", "60"))  # noqa: F405
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # noqa: F405
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    # Safe behind a transaction-mode pooler by default: no server-side prepared statements.
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = prepare_threshold(  # noqa: F405
        os.environ.get("DJANGO_DB_PREPARE_THRESHOLD", "off")
    )

if os.environ.get("DJANGO_REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["DJANGO_REDIS_URL"],
        }
    }
else:
    CACHES["default"]["LOCATION"] = os.environ.get("DJANGO_CACHE_DIR", "/var/tmp/taskruns-cache")  # noqa: F405

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"taskruns": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
