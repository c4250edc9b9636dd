"""Demo data for `make run`: merchants whose credentials point at the bundled gateway sandbox."""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from arbook.models import GatewayCredential, Merchant
from arbook.services.reminders import reminder_steps_default
from gateways.sandbox import CREDENTIALS, OPTIONS

DEMO = [
    ("Toko Sejahtera", "toko-sejahtera", "Asia/Jakarta", ["faspay", "xendit", "espay"]),
    ("Nusantara Events", "nusantara-events", "Asia/Jakarta", ["munio"]),
    ("Nordlys ApS", "nordlys", "Europe/Copenhagen", ["farpay"]),
]

#: Which secret keys each provider's demo credential stores (the sandbox accepts all of them).
DEMO_SECRETS = {
    "faspay": ["username", "password"],
    "xendit": ["api_key", "callback_token"],
    "munio": ["client_key", "login", "password"],
    "farpay": ["api_key", "webhook_secret"],
    "espay": ["signature_key"],
}


class Command(BaseCommand):
    help = "Create demo merchants with credentials pointing at the gateway sandbox."

    def add_arguments(self, parser):
        parser.add_argument("--if-empty", action="store_true", help="only when there is no merchant yet")
        parser.add_argument("--sandbox-url", default=settings.ARBOOK_SANDBOX_URL)

    @transaction.atomic
    def handle(self, *args, if_empty: bool, sandbox_url: str, **options):
        if if_empty and Merchant.objects.exists():
            self.stdout.write("Merchants exist already; no demo data added.")
            return
        admins = list(get_user_model().objects.filter(is_superuser=True))
        for name, slug, tz, providers in DEMO:
            merchant, _ = Merchant.objects.get_or_create(slug=slug, defaults={"name": name, "timezone": tz})
            merchant.members.add(*admins)
            reminder_steps_default(merchant=merchant)
            for provider in providers:
                if merchant.credentials.filter(provider=provider).exists():
                    continue
                GatewayCredential.objects.create(
                    merchant=merchant, provider=provider, label="sandbox",
                    base_url=f"{sandbox_url.rstrip('/')}/{provider}",
                    secrets={k: CREDENTIALS[provider][k] for k in DEMO_SECRETS[provider]},
                    options=dict(OPTIONS.get(provider, {})), sync_interval_minutes=5,
                )
        self.stdout.write(self.style.SUCCESS(
            f"Demo data: {len(DEMO)} merchants with credentials pointing at the gateway sandbox at {sandbox_url}, "
            "each with the default reminder sequence."
        ))
