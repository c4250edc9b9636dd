"""factory-boy factories for the models."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from arbook.models import Customer, GatewayCredential, Invoice, InvoiceEvent, Merchant, SyncRun
from arbook.services.customers import name_key

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.test")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Merchant

    name = factory.Sequence(lambda n: f"Merchant {n}")
    slug = factory.Sequence(lambda n: f"merchant-{n}")


class CredentialFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GatewayCredential

    merchant = factory.SubFactory(MerchantFactory)
    provider = "faspay"
    label = "main"
    base_url = "http://127.0.0.1:9/faspay"
    secrets = factory.LazyFunction(lambda: {"username": "bot-user", "password": "hunter2-very-secret"})


class SyncRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SyncRun

    credential = factory.SubFactory(CredentialFactory)
    status = SyncRun.Status.SUCCEEDED
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)


def customer_named(merchant, name: str):
    """The merchant's customer of that name (created on first use), or None for a nameless invoice."""
    if not name:
        return None
    found = Customer.objects.filter(merchant=merchant, name=name).order_by("id").first()
    return found or Customer.objects.create(merchant=merchant, name=name, name_key=name_key(name))


class InvoiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invoice

    credential = factory.SubFactory(CredentialFactory)
    merchant = factory.LazyAttribute(lambda o: o.credential.merchant)
    provider = factory.LazyAttribute(lambda o: o.credential.provider)
    external_id = factory.Sequence(lambda n: f"EXT-{n:06d}")
    number = factory.Sequence(lambda n: f"INV-{n:06d}")
    customer_name = factory.Sequence(lambda n: f"Customer {n % 7}")
    customer_email = factory.LazyAttribute(lambda o: f"{o.customer_name.replace(' ', '').lower()}@example.test")
    #: Every synced invoice has a customer (the write path links one); here one per merchant and name.
    customer = factory.LazyAttribute(lambda o: customer_named(o.merchant, o.customer_name))
    currency = "IDR"
    amount = Decimal("1500000")
    outstanding = Decimal("1500000")
    paid_amount = Decimal("0")
    status = "open"
    provider_status = "Unpaid"
    issued_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=20))
    due_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=10))
    first_seen_at = factory.LazyFunction(timezone.now)
    last_synced_at = factory.LazyFunction(timezone.now)


class InvoiceEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = InvoiceEvent

    invoice = factory.SubFactory(InvoiceFactory)
    seen_at = factory.LazyFunction(timezone.now)
