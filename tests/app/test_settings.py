"""Settings: production refuses to start without keys; `check --deploy` is clean under it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


CONFIG = ("SECRET_KEY", "ARBOOK_ENCRYPTION_KEYS", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE", "DATABASE_URL",
          "REDIS_URL", "ARBOOK_ALLOW_SQLITE", "ARBOOK_ALLOW_FILE_BROKER")
#: Production's required environment (nothing connects to these for `check` and the settings read).
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "arbook.settings.production",
    "SECRET_KEY": "x" * 20 + Fernet.generate_key().decode(),
    "ARBOOK_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "arbook.example.com",
    "DATABASE_URL": "postgres://arbook@127.0.0.1:9/arbook",
    "REDIS_URL": "redis://127.0.0.1:9/0",
}


def run_manage(*args, env_extra):
    env = {k: v for k, v in os.environ.items() if k not in CONFIG}
    env.update(env_extra)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_check_deploy_has_no_warnings_under_production_settings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env_extra=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_keys():
    result = run_manage("check", env_extra={"DJANGO_SETTINGS_MODULE": "arbook.settings.production",
                                            "ALLOWED_HOSTS": "arbook.example.com"})
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize("unset, message", [
    ("DATABASE_URL", "DATABASE_URL must name a PostgreSQL database"),
    ("REDIS_URL", "REDIS_URL must be set for production"),
])
def test_production_refuses_to_start_on_the_embedded_defaults(unset, message):
    env = {k: v for k, v in PRODUCTION.items() if k != unset}
    result = run_manage("check", env_extra=env)
    assert result.returncode != 0 and message in result.stderr
    sqlite = run_manage("check", env_extra={**PRODUCTION, "DATABASE_URL": "sqlite:////tmp/arbook-prod.sqlite3"})
    assert sqlite.returncode != 0 and "DATABASE_URL must name a PostgreSQL database" in sqlite.stderr


def test_production_runs_on_the_embedded_defaults_when_explicitly_allowed(tmp_path):
    env = {k: v for k, v in PRODUCTION.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"ARBOOK_ALLOW_SQLITE": "1", "ARBOOK_ALLOW_FILE_BROKER": "1", "ARBOOK_VAR_DIR": str(tmp_path)})
    result = run_manage("check", env_extra=env)
    assert result.returncode == 0, result.stderr


SHOW = """
from django.conf import settings
from django.test import Client
client = Client()
print("age", settings.SESSION_COOKIE_AGE)
print("healthz", client.get("/healthz").status_code)
print("login", client.get("/accounts/login/").status_code)
print("secure healthz", client.get("/healthz", secure=True).status_code)
"""


def test_production_exempts_healthz_from_the_https_redirect_and_sessions_last_a_working_day():
    result = run_manage("shell", "-c", SHOW, env_extra={**PRODUCTION, "ALLOWED_HOSTS": "arbook.example.com,testserver"})
    assert result.returncode == 0, result.stderr
    seen = dict(line.rsplit(" ", 1) for line in result.stdout.splitlines() if line.strip())
    assert seen["age"] == str(10 * 60 * 60)
    assert seen["login"] == "301"  # plain HTTP is redirected to HTTPS ...
    assert seen["healthz"] not in ("301", "302")  # ... but the load balancer's check is answered
    assert seen["healthz"] == seen["secure healthz"]


def test_development_generates_missing_keys_once(tmp_path):
    env = {"DJANGO_SETTINGS_MODULE": "arbook.settings.development", "ARBOOK_VAR_DIR": str(tmp_path), "DATABASE_URL":
           f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    first = run_manage("check", env_extra=env)
    assert first.returncode == 0, first.stderr
    secrets_file = tmp_path / "dev-secrets.env"
    content = secrets_file.read_text()
    assert "SECRET_KEY=" in content and "ARBOOK_ENCRYPTION_KEYS=" in content
    run_manage("check", env_extra=env)
    assert secrets_file.read_text() == content  # generated once, then kept
    assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"


def test_dev_secrets_are_git_ignored():
    assert "var/" in (ROOT / ".gitignore").read_text().split()
