"""Read-only pages answer only GET and HEAD: POST, PUT, PATCH and DELETE get 405 (with Allow),
never the page; the pages with a real form keep their POST."""
from __future__ import annotations

import pytest
from django.urls import reverse

from arbook.models import Customer
from arbook.services.espay_batch import espay_batch_create
from tests.espay.helpers import csv_bytes, rows
from tests.factories import CredentialFactory, InvoiceFactory

pytestmark = pytest.mark.django_db

WRITES = ("post", "put", "patch", "delete")


@pytest.fixture
def pages(merchant, user):
    customer = Customer.objects.create(merchant=merchant, name="PT Maju")
    invoice = InvoiceFactory(credential=CredentialFactory(merchant=merchant), customer=customer)
    espay = CredentialFactory(merchant=merchant, provider="espay", secrets={"signature_key": "k"},
                              options={"comm_code": "SGWARBOOK"})
    batch = espay_batch_create(credential=espay, user=user, file_name="b.csv", content=csv_bytes(rows(2)))
    return ["/", "/aging/", "/invoices/", f"/invoices/{invoice.pk}/", "/syncs/", "/syncs/status.json",
            "/espay/batches/", f"/espay/batches/{batch.pk}/", f"/espay/batches/{batch.pk}/progress/",
            f"/espay/batches/{batch.pk}/export.csv", f"/espay/batches/{batch.pk}/file/",
            "/espay/batches/template.csv", "/customers/", "/customers/suggestions/", f"/customers/{customer.pk}/",
            f"/customers/{customer.pk}/statement/"]


def test_read_only_pages_answer_405_to_writes(signed_in, pages):
    for url in pages + ["/healthz"]:
        assert signed_in.get(url).status_code == 200, url
        assert signed_in.head(url).status_code == 200, url  # HEAD is as safe as GET (load balancers use it)
        for method in WRITES:
            response = getattr(signed_in, method)(url)
            assert response.status_code == 405, (method, url, response.status_code)
            assert "POST" not in response["Allow"], url


def test_the_pages_with_a_form_keep_their_post(signed_in, credential):
    assert signed_in.post(reverse("sync_now", args=[credential.pk])).status_code == 302
    upload = signed_in.post(reverse("espay_batch_new"), {})
    assert upload.status_code == 200  # the form again, with its errors
    assert signed_in.post("/accounts/logout/").status_code == 302
