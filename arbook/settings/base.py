"""Settings shared by every profile, read from the environment (django-environ).

With nothing configured, every `manage.py` command works for development: a SQLite file, an
embedded broker (kombu's filesystem transport) and file cache need no server, and the missing
keys (SECRET_KEY, ARBOOK_ENCRYPTION_KEYS) are generated once into the git-ignored
`var/dev-secrets.env`. `arbook.settings.production` refuses to start without them.
"""
from __future__ import annotations

import secrets as _secrets
from datetime import timedelta
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from csp.constants import NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(environ.Env().str("ARBOOK_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
DEV_SECRETS_FILE = VAR_DIR / "dev-secrets.env"


def ensure_dev_secrets() -> None:
    """Generate the development keys once, into a git-ignored file, when the environment has none."""
    if DEV_SECRETS_FILE.exists() or (env.str("SECRET_KEY", default="") and env.str("ARBOOK_ENCRYPTION_KEYS", default="")):
        return
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    content = (
        "# Generated once by arbook for development. Never commit; production sets these in its environment.\n"
        f"SECRET_KEY={_secrets.token_urlsafe(50)}\n"
        f"ARBOOK_ENCRYPTION_KEYS={Fernet.generate_key().decode()}\n"
    )
    DEV_SECRETS_FILE.write_text(content)
    DEV_SECRETS_FILE.chmod(0o600)


def read_dev_secrets() -> None:
    ensure_dev_secrets()
    if DEV_SECRETS_FILE.exists():
        environ.Env.read_env(str(DEV_SECRETS_FILE), overwrite=False)


DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_tables2",
    "django_filters",
    "axes",
    "csp",
    "arbook",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a signed-in user unless its view is marked @login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # After a change, read from the primary for a while (arbook.dbrouting).
    "arbook.dbrouting.ReplicaMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last (django-axes): turns a locked-out sign-in into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "arbook.urls"
WSGI_APPLICATION = "arbook.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "arbook.context_processors.navigation",
            ],
        },
    },
]

# -- database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'arbook.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and the scheduler share the file: WAL + a busy timeout +
    # IMMEDIATE transactions keep them from tripping over each other's locks.
    # Tests on SQLite use a file, so a worker process (the Celery integration test) can see it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-arbook.sqlite3")}
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE",
         "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# Optional read replica (PostgreSQL streaming replication): the report pages read from it, see
# arbook/dbrouting.py. The suite never points this at a replica for the whole run (its TestCases
# write in transactions a second connection cannot see); tests/scale/test_replica.py adds one.
if env.str("DATABASE_REPLICA_URL", default=""):
    DATABASES["replica"] = env.db_url("DATABASE_REPLICA_URL")
    DATABASES["replica"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["replica"].setdefault("CONN_HEALTH_CHECKS", True)
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["arbook.dbrouting.ReplicaRouter"]
#: After a change, this browser reads from the primary for this long (seconds).
DATABASE_REPLICA_STICKY_SECONDS = env.int("DATABASE_REPLICA_STICKY_SECONDS", default=30)
#: A replica further behind than this is skipped; the reports read from the primary meanwhile.
DATABASE_REPLICA_MAX_LAG = env.int("DATABASE_REPLICA_MAX_LAG", default=300)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- broker and cache -----------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Embedded default: no server needed. The filesystem transport is shared by every process
    # on this machine; fine for one developer, not for production (which sets REDIS_URL).
    BROKER_DIR = VAR_DIR / "broker"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                          "LOCATION": str(VAR_DIR / "cache")}}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "Asia/Jakarta"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# -- credentials encryption -----------------------------------------------------------------
# Comma-separated Fernet keys; the first encrypts, all decrypt (rotation: put the new key first,
# run `manage.py rotate_credential_keys`, then drop the old one).
ARBOOK_ENCRYPTION_KEYS = env.list("ARBOOK_ENCRYPTION_KEYS", default=[])

# -- auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"
#: A session lasts a working day (then sign in again), whatever the profile.
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=10 * 60 * 60)

# Login throttling (django-axes; its backend must come first, and every authenticate() call then
# needs the request: the login views pass it, tests use force_login). After AXES_FAILURE_LIMIT
# wrong passwords for one username from one client address, that pair is locked out for
# AXES_COOLOFF_TIME, the right password included: the sign-in answers 429 with
# registration/locked_out.html. Username + address, so a stranger cannot lock a colleague out from
# elsewhere and one office behind a shared address is not locked out as a whole. Attempts and
# lock-outs are listed in admin (Axes); `manage.py axes_reset` (or deleting the attempt) unlocks.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
#: The client address behind ARBOOK_PROXY_COUNT trusted reverse proxies (X-Forwarded-For).
AXES_CLIENT_IP_CALLABLE = "arbook.security.client_ip"
ARBOOK_PROXY_COUNT = env.int("ARBOOK_PROXY_COUNT", default=0)

# -- Content-Security-Policy (django-csp 4) ------------------------------------------------------
# Every script and stylesheet is a file from static/ (no inline <script>, style="" or on*=), so
# the policy allows nothing inline and nothing from elsewhere; the pages may not be framed.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# -- i18n / time ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Jakarta")
USE_I18N = True
USE_TZ = True

# -- static ---------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = VAR_DIR / "media"
# Serve app static files straight from static/ when DEBUG (no collectstatic needed in development).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# -- logging --------------------------------------------------------------------------------
# A notification URL's token (/hooks/<provider>/<token>/) never reaches a log: the loggers that
# print request paths (runserver's request lines, Django's 4xx/5xx warnings) and the console
# handler mask it (arbook.log_filters); gunicorn's access log does the same (gunicorn.conf.py).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_hook_tokens": {"()": "arbook.log_filters.HookTokenFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        # Django's own format for runserver's request lines (django.utils.log.DEFAULT_LOGGING).
        "django.server": {"()": "django.utils.log.ServerFormatter", "format": "[{server_time}] {message}",
                          "style": "{"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["mask_hook_tokens"]},
        "django.server": {"class": "logging.StreamHandler", "formatter": "django.server",
                          "filters": ["mask_hook_tokens"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes.apps": {"level": "WARNING"},  # its "BEGIN version ..." line on every command
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False,
                          "filters": ["mask_hook_tokens"]},
        "django.request": {"filters": ["mask_hook_tokens"]},
        "django.security": {"filters": ["mask_hook_tokens"]},
    },
}

# -- arbook ---------------------------------------------------------------------------------
#: Where `make run`'s demo merchants find the bundled gateway sandbox.
ARBOOK_SANDBOX_URL = env.str("ARBOOK_SANDBOX_URL", default="http://127.0.0.1:8900")

# The INCLUDE columns of the invoice indexes are a PostgreSQL optimisation (index-only aging
# scans); SQLite ignores them, which is fine for the embedded default.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

# The scheduler's entries. Every minute, enqueue the credentials whose own interval elapsed.
# Safe to run on two hosts at once (so losing one loses no tick): the sync tick claims each due
# credential with a compare-and-set (`sync_claim`), the reminders tick runs a merchant's day under
# a lock, and the collections and rollup ticks are idempotent. ARBOOK_SYNC_TICK_SECONDS shortens the tick for
# tests/scale/test_workers.py.
CELERY_BEAT_SCHEDULE = {
    "enqueue-due-syncs": {"task": "arbook.sync_enqueue_due", "schedule": env.float("ARBOOK_SYNC_TICK_SECONDS", default=60.0)},
    # Broken promises and newly overdue invoices reach the worklist within ten minutes.
    "collections-tick": {"task": "arbook.collections_tick", "schedule": 600.0},
    # Reminders: each merchant's run goes out once a day (the first tick after 08:00 its time).
    "reminders-tick": {"task": "arbook.reminders_tick", "schedule": 900.0},
    # The aging and day rollups' delta rows folded into one row per key (any two runs are safe).
    "rollups-compact": {"task": "arbook.rollups_compact", "schedule": 60.0},
}

# -- e-mail (reminders) ---------------------------------------------------------------------
# EMAIL_URL (django-environ: smtp://user:pass@host:587, smtp+tls://..., smtp+ssl://...) or the
# usual EMAIL_* settings. With neither, development writes each message as a file under
# var/mail/ (`make run` says where); production defaults to SMTP on localhost:25.
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
    EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
    EMAIL_PORT = env.int("EMAIL_PORT", default=25)
    EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
    EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
    EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_FILE_PATH = str(VAR_DIR / "mail")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="arbook reminders <reminders@localhost>")
