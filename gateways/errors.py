"""Error taxonomy for gateway calls: callers act on the class, never on the message.

Messages are written for people and never contain a secret: they name the provider, the
method, the path (without query string) and the HTTP status, nothing from the credentials.
"""
from __future__ import annotations


class GatewayError(Exception):
    """Base of every error a client raises."""

    def __init__(self, message: str, *, provider: str = "", status_code: int | None = None):
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code


class TransientError(GatewayError):
    """Worth retrying later: timeout, connection error, 429, 5xx (after the client's own retries)."""


class AuthError(GatewayError):
    """The provider refused the credentials or the signature; retrying will not help."""


class BadResponseError(GatewayError):
    """The provider answered, but not in the documented shape (malformed JSON, missing fields)."""


class ConfigurationError(GatewayError):
    """The credential lacks a required secret or option, or names an unknown provider."""


class OutcomeUnknownError(TransientError):
    """A non-idempotent call (POST) may or may not have been applied (timeout after sending).

    The caller retries with the same idempotency key (Espay: the same `rq_uuid`)."""
