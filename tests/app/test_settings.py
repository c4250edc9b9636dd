"""Settings: production refuses to start without keys; `check --deploy` is clean under it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def run_manage(*args, env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ARBOOK_ENCRYPTION_KEYS", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_check_deploy_has_no_warnings_under_production_settings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env_extra={
        "DJANGO_SETTINGS_MODULE": "arbook.settings.production",
        "SECRET_KEY": "x" * 20 + Fernet.generate_key().decode(),
        "ARBOOK_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "arbook.example.com",
    })
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_keys():
    result = run_manage("check", env_extra={"DJANGO_SETTINGS_MODULE": "arbook.settings.production",
                                            "ALLOWED_HOSTS": "arbook.example.com"})
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


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
