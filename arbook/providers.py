"""What each provider's credential holds (DESIGN.md "What a credential holds"), for the admin form.

Which combination is *required* is decided by the gateway client itself (its constructor
validates), so the rule is written once, in `gateways/`.
"""
from __future__ import annotations

#: Secret keys a credential of each provider may hold, in the order the admin shows them.
SECRET_KEYS: dict[str, tuple[str, ...]] = {
    "faspay": ("username", "password"),
    "xendit": ("api_key", "secret_key", "callback_token"),
    "munio": ("client_key", "access_token", "login", "password"),
    "farpay": ("api_key", "webhook_secret"),
    "espay": ("signature_key",),
}

SECRET_HELP: dict[str, str] = {
    "username": "Faspay Billing user name",
    "password": "Faspay Billing password, or Munio login password",
    "api_key": "Xendit via Appgregator: x-api-key; FarPay: X-API-KEY",
    "secret_key": "Xendit direct: secret API key (Basic auth)",
    "callback_token": "Xendit: callback verification token (for notifications)",
    "client_key": "Munio Client-Key",
    "access_token": "Munio bearer token (or give login + password)",
    "login": "Munio login (email)",
    "webhook_secret": "FarPay webhook signing secret (whsec_...)",
    "signature_key": "Espay signature key",
}

ALL_SECRET_KEYS: tuple[str, ...] = tuple(dict.fromkeys(k for keys in SECRET_KEYS.values() for k in keys))
