"""Health checks: each returns "ok" or a short, secret-free reason."""
from __future__ import annotations

import logging
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)


def database_check() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not reachable"
        logger.warning("healthz: database check failed: %s", type(exc).__name__)
        return f"unreachable ({type(exc).__name__})"
    return "ok"


def broker_check() -> str:
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".healthz"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            return f"broker folder not writable ({type(exc).__name__})"
        return "ok"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
    except Exception as exc:  # connection refused, timeout, auth
        logger.warning("healthz: broker check failed: %s", type(exc).__name__)
        return f"unreachable ({type(exc).__name__})"
    return "ok"
