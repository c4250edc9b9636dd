"""Re-encrypt every credential's secrets with the first key of ARBOOK_ENCRYPTION_KEYS."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from arbook.crypto import SecretsUnavailable, rotate
from arbook.models import GatewayCredential


class Command(BaseCommand):
    help = "Rotate credential encryption: put the new key first in ARBOOK_ENCRYPTION_KEYS, run this, drop the old key."

    def handle(self, *args, **options):
        done = 0
        with transaction.atomic():
            for credential in GatewayCredential.objects.select_for_update().exclude(secrets_encrypted=""):
                try:
                    credential.secrets_encrypted = rotate(credential.secrets_encrypted)
                except SecretsUnavailable as exc:
                    raise CommandError(f"credential {credential.pk}: {exc}") from None
                credential.save(update_fields=["secrets_encrypted"])
                done += 1
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {done} credential(s) with the primary key."))
