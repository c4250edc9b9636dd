"""Production profile: `DJANGO_SETTINGS_MODULE=arbook.settings.production`.

Refuses to start without SECRET_KEY, ARBOOK_ENCRYPTION_KEYS and ALLOWED_HOSTS in the
environment, and without a PostgreSQL DATABASE_URL and a REDIS_URL unless ARBOOK_ALLOW_SQLITE=1 /
ARBOOK_ALLOW_FILE_BROKER=1 say otherwise; `manage.py check --deploy` reports no warnings under it.
"""
from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .base import DATABASES, REDIS_URL, env


def _required(name: str) -> str:
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(f"{name} must be set in the environment for production")
    return value


DEBUG = False
if not env.str("EMAIL_URL", default="") and not env.str("EMAIL_BACKEND", default=""):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"  # reminders go out by SMTP
SECRET_KEY = _required("SECRET_KEY")
ARBOOK_ENCRYPTION_KEYS = [k for k in _required("ARBOOK_ENCRYPTION_KEYS").split(",") if k.strip()]
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set in the environment for production")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# Production runs on PostgreSQL and Redis (the embedded SQLite file and filesystem broker are for
# one developer's machine): refuse to start without them unless explicitly allowed.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" and not env.bool("ARBOOK_ALLOW_SQLITE", default=False):
    raise ImproperlyConfigured("DATABASE_URL must name a PostgreSQL database for production (it is unset or "
                               "SQLite); set ARBOOK_ALLOW_SQLITE=1 to run on SQLite anyway")
if not REDIS_URL and not env.bool("ARBOOK_ALLOW_FILE_BROKER", default=False):
    raise ImproperlyConfigured("REDIS_URL must be set for production (without it Celery uses the filesystem "
                               "broker and the cache is a local folder); set ARBOOK_ALLOW_FILE_BROKER=1 to "
                               "run that way anyway")

# The load balancer's health check may come over plain HTTP: answer it instead of redirecting.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
