"""Encryption at rest for credential secrets (Fernet / MultiFernet from `cryptography`).

The database column holds only a Fernet token of the JSON dict. The first key of
ARBOOK_ENCRYPTION_KEYS encrypts; every key decrypts, so rotating means putting a new key first
and re-encrypting (`manage.py rotate_credential_keys`) before dropping the old one.
"""
from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretsUnavailable(Exception):
    """The stored secrets cannot be read: no key configured, or none of the keys fits.

    Its message is safe to show: it names the setting, never a key or a value."""


def _fernet() -> MultiFernet:
    keys = [k.strip() for k in getattr(settings, "ARBOOK_ENCRYPTION_KEYS", []) if k and k.strip()]
    if not keys:
        raise SecretsUnavailable(
            "No credential encryption key is configured: set ARBOOK_ENCRYPTION_KEYS "
            "(comma-separated Fernet keys, the first one encrypts)."
        )
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError):
        raise SecretsUnavailable(
            "ARBOOK_ENCRYPTION_KEYS holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes, e.g. from Fernet.generate_key())."
        ) from None


def encrypt_json(value: dict[str, Any]) -> str:
    return _fernet().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        return json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken:
        raise SecretsUnavailable(
            "The stored credential secrets cannot be decrypted with the configured "
            "ARBOOK_ENCRYPTION_KEYS (wrong or rotated-out key). Restore the old key, or enter the secrets again."
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt a token with the current primary key."""
    return _fernet().rotate(token.encode()).decode() if token else token
