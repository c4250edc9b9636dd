"""Customers across gateways, through the sandbox: the sync links every invoice to a customer by
the identity rules, the same person on Xendit and Munio is one customer, and staff's merge and
split survive later syncs."""
from __future__ import annotations

from collections import defaultdict

import pytest

from arbook.models import Customer, CustomerBalance, CustomerIdentity, GatewayCredential, Invoice
from arbook.selectors import aging
from arbook.services.customers import customer_merge, customer_split, customers_refresh, normalize_email
from arbook.services.sync import invoices_sync
from tests.factories import MerchantFactory, UserFactory
from tests.sync.conftest import fast_client
from tests.sync.test_sync import DyingClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def synced(make_credential):
    merchant = MerchantFactory()
    creds = {p: make_credential(p, merchant=merchant) for p in ("xendit", "munio", "faspay", "farpay")}
    for credential in creds.values():
        run = invoices_sync(credential=credential, full=True)
        assert run.status == "succeeded", run.error
    return merchant, creds


def test_every_invoice_has_a_customer_and_xendit_and_munio_share_people(synced):
    merchant, creds = synced
    assert not Invoice.objects.filter(merchant=merchant, customer__isnull=True).exists()
    providers = defaultdict(set)
    for customer_id, provider in Invoice.objects.filter(merchant=merchant).values_list("customer_id", "provider"):
        providers[customer_id].add(provider)
    shared = [c for c, ps in providers.items() if {"xendit", "munio"} <= ps]
    assert shared, "the sandbox's shared people are one customer on both gateways"
    customer = Customer.objects.get(pk=shared[0])
    emails = {normalize_email(e) for e in customer.invoices.values_list("customer_email", flat=True) if e}
    assert len(emails) == 1  # one address, written in different cases by the two gateways
    kinds = set(customer.identities.values_list("kind", flat=True))
    assert "email" in kinds
    assert customer.providers.split(",") == sorted(providers[customer.pk])
    # Faspay and FarPay customers are recognised by their own reference on their credential.
    faspay_refs = CustomerIdentity.objects.filter(credential=creds["faspay"], kind="ref")
    assert faspay_refs.exists()
    for ref in faspay_refs[:20]:
        assert set(Invoice.objects.filter(credential=creds["faspay"], customer_ref=ref.value)
                   .values_list("customer_id", flat=True)) == {ref.customer_id}
    # The summary the customer list reads is there after the run.
    assert CustomerBalance.objects.filter(customer__merchant=merchant).exists()
    assert Customer.objects.filter(merchant=merchant, invoice_count__gt=0).count() == len(providers)


def test_a_resync_changes_no_customer(synced):
    merchant, creds = synced
    before = dict(Invoice.objects.filter(merchant=merchant).values_list("id", "customer_id"))
    customers = Customer.objects.filter(merchant=merchant).count()
    for credential in creds.values():
        invoices_sync(credential=credential, full=True)
    assert dict(Invoice.objects.filter(merchant=merchant).values_list("id", "customer_id")) == before
    assert Customer.objects.filter(merchant=merchant).count() == customers


def test_merge_and_split_survive_a_resync(synced):
    merchant, creds = synced
    staff = UserFactory()
    faspay_customer = Invoice.objects.filter(credential=creds["faspay"]).exclude(customer_ref="").first().customer
    xendit_customer = Invoice.objects.filter(credential=creds["xendit"]).exclude(customer_email="").first().customer
    customer_merge(target=faspay_customer, others=[xendit_customer], user=staff)
    merged = set(Invoice.objects.filter(customer=faspay_customer).values_list("id", flat=True))
    for credential in creds.values():
        invoices_sync(credential=credential, full=True)
    assert set(Invoice.objects.filter(customer=faspay_customer).values_list("id", flat=True)) == merged
    email = faspay_customer.identities.filter(kind="email").first()
    split = customer_split(customer=faspay_customer, identity_ids=[email.pk], name="Split off", user=staff)
    moved = set(Invoice.objects.filter(customer=split).values_list("id", flat=True))
    assert moved
    for credential in creds.values():
        invoices_sync(credential=credential, full=True)
    assert set(Invoice.objects.filter(customer=split).values_list("id", flat=True)) == moved


def _summaries(merchant) -> dict:
    return {c.pk: (c.invoice_count, c.open_count, c.oldest_open_due, c.last_paid_at, c.providers,
                   sorted(c.balances.values_list("currency", "outstanding", "open_count")))
            for c in Customer.objects.filter(merchant=merchant).prefetch_related("balances")}


def test_a_run_marks_its_credential_until_it_has_settled_its_customers(sandbox, make_credential):
    """Balances lag a running sync (refreshed once, at its end); the credential says so meanwhile,
    so aging by customer reads invoices. A run killed before settling leaves the mark, and the
    next run refreshes every customer of the credential, not only those it writes itself."""
    credential = make_credential("xendit")
    with pytest.raises(SystemExit):
        invoices_sync(credential=credential, client=DyingClient(fast_client(credential), 2))
    credential.refresh_from_db()
    assert credential.customers_pending_since is not None
    written = set(Invoice.objects.filter(credential=credential).values_list("customer_id", flat=True))
    assert written and not CustomerBalance.objects.filter(customer_id__in=written).exists()
    assert not aging._balances_bound(("open",), [credential.merchant_id])

    # An admin form saved with a copy loaded before the mark does not clear it.
    stale = GatewayCredential.objects.get(pk=credential.pk)
    stale.customers_pending_since = None
    stale.label = "renamed"
    stale.save()
    credential.refresh_from_db()
    assert credential.label == "renamed" and credential.customers_pending_since is not None

    rerun = invoices_sync(credential=credential)
    assert rerun.status == "succeeded", rerun.error
    credential.refresh_from_db()
    assert credential.customers_pending_since is None
    assert aging._balances_bound(("open",), [credential.merchant_id])
    settled = _summaries(credential.merchant)
    customers_refresh(customer_ids=list(settled))
    assert _summaries(credential.merchant) == settled  # every one of them is up to date
    assert CustomerBalance.objects.filter(customer_id__in=written).exists()


class FailingClient(DyingClient):
    """Raises an ordinary error after `k` pages: the run ends as failed, in its own hands."""

    def iter_pages(self, **kwargs):
        for number, page in enumerate(self.client.iter_pages(**kwargs), start=1):
            yield page
            if number == self.k:
                raise RuntimeError("the provider went away")


def test_a_run_that_fails_settles_what_it_wrote_and_clears_the_mark(sandbox, make_credential):
    credential = make_credential("faspay")
    run = invoices_sync(credential=credential, client=FailingClient(fast_client(credential), 2))
    assert run.status == "failed"
    credential.refresh_from_db()
    assert credential.customers_pending_since is None
    written = set(Invoice.objects.filter(credential=credential).values_list("customer_id", flat=True))
    # Whichever pages came first (slices are read at once), every customer they wrote is settled:
    # its summary counts its invoices and a recount changes nothing.
    settled = _summaries(credential.merchant)
    assert written and all(settled[customer][0] > 0 for customer in written)
    customers_refresh(customer_ids=list(written))
    assert _summaries(credential.merchant) == settled
