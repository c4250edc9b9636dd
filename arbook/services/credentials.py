"""Credential services: building a gateway client, testing a connection."""
from __future__ import annotations

import logging

import gateways
from arbook.crypto import SecretsUnavailable
from arbook.models import GatewayCredential

logger = logging.getLogger(__name__)


def credential_client(*, credential: GatewayCredential, **kwargs):
    """The gateway client for a credential (raises SecretsUnavailable / ConfigurationError)."""
    return gateways.get_client(credential.provider, **credential.client_kwargs(), **kwargs)


def secrets_scrub(*, text: str, credential: GatewayCredential) -> str:
    """Defence in depth: remove any stored secret value from a text before it is shown or saved."""
    try:
        values = [str(v) for v in credential.secrets.values() if v and len(str(v)) >= 4]
    except SecretsUnavailable:
        return text
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def credential_test_connection(*, credential: GatewayCredential) -> tuple[bool, str]:
    """One cheap authenticated call. Returns (ok, message); the message never holds a secret.

    `credential` may be unsaved: the admin form tests the values on the form this way."""
    try:
        client = credential_client(credential=credential, max_retries=1, timeout=(5, 15))
        message = client.check_connection()
    except SecretsUnavailable as exc:
        return False, str(exc)
    except gateways.GatewayError as exc:
        kind = {gateways.AuthError: "refused the credential",
                gateways.TransientError: "is unreachable or busy",
                gateways.BadResponseError: "answered in an unexpected way",
                gateways.ConfigurationError: "is not fully configured"}
        label = next((v for k, v in kind.items() if isinstance(exc, k)), "failed")
        logger.info("test connection failed credential=%s error=%s", credential.pk, type(exc).__name__)
        return False, secrets_scrub(text=f"{credential.get_provider_display()} {label}: {exc}", credential=credential)
    return True, secrets_scrub(text=message, credential=credential)
