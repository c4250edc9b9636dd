"""Gateway clients: one module per provider, plain Python + requests, no Django.

`get_client(provider, base_url=..., secrets=..., options=...)` picks the client.
"""
from __future__ import annotations

import importlib
from typing import Any

from .errors import (AuthError, BadResponseError, ConfigurationError, GatewayError, OutcomeUnknownError,
                     TransientError)
from .models import InvoiceRef, Page, RemoteInvoice, SettledScope

PROVIDERS = ("faspay", "xendit", "munio", "farpay", "espay")

__all__ = [
    "PROVIDERS", "get_client", "client_class", "Page", "RemoteInvoice", "InvoiceRef", "SettledScope", "GatewayError", "TransientError",
    "AuthError", "BadResponseError", "ConfigurationError", "OutcomeUnknownError",
]


def client_class(provider: str):
    if provider not in PROVIDERS:
        raise ConfigurationError(f"unknown provider {provider!r}")
    module = importlib.import_module(f"{__name__}.{provider}")
    return module.Client


def get_client(provider: str, **kwargs: Any):
    """Build the client for `provider` from `base_url`, `secrets`, `options` (and optional `session`)."""
    return client_class(provider)(**kwargs)
