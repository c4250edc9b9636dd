"""Headless Chromium: upload an Espay batch, confirm it, and watch the VA numbers arrive."""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from arbook.models import EspayBatch
from tests.browser import sign_in
from tests.espay.conftest import make_credential
from tests.espay.helpers import csv_bytes, rows
from tests.factories import MerchantFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def espay_sandbox():
    from gateways.sandbox import start

    server = start(providers=("espay",))
    yield server
    server.stop()


@pytest.fixture
def background_worker(monkeypatch, settings):
    """Stand-in for the Celery worker: the enqueued task runs a moment later in another thread,
    so the page shows the progress and must update itself (the real worker is tested elsewhere)."""
    from arbook.services.espay_batch import espay_batch_send
    from arbook.tasks import espay as tasks

    settings.ESPAY_RETRY_DELAYS = (0,)
    threads = []

    def delay(batch_id):
        def run():
            try:
                threading.Event().wait(1.0)
                espay_batch_send(batch=EspayBatch.objects.get(pk=batch_id))
            finally:
                connection.close()

        thread = threading.Thread(target=run, daemon=True)
        threads.append(thread)
        thread.start()

    monkeypatch.setattr(tasks.espay_batch_send_task, "delay", delay)
    yield
    for thread in threads:
        thread.join(timeout=30)


def test_upload_confirm_and_see_va_numbers(live_server, page, espay_sandbox, background_worker, tmp_path):
    user = UserFactory(username="finance")
    merchant = MerchantFactory(name="Toko Sejahtera")
    merchant.members.add(user)
    make_credential(merchant, espay_sandbox)
    data = rows(3)
    data[1]["member_code"] = "REJECT-1"
    spreadsheet = tmp_path / "october.csv"
    spreadsheet.write_bytes(csv_bytes(data, delimiter=";", encoding="cp1252"))

    sign_in(page, f"{live_server.url}/espay/batches/new/", "finance")

    page.get_by_label("Spreadsheet (CSV or XLSX)").set_input_files(str(spreadsheet))
    page.get_by_role("button", name="Check the file").click()
    page.get_by_role("heading", name="Ready to send", exact=True).wait_for()
    assert page.get_by_text("Calls to Espay").is_visible()

    page.get_by_role("button", name="Send 3 invoices to Espay").click()
    page.get_by_text("Confirmed: the batch is being sent to Espay.").wait_for()
    # No manual reload from here: the page polls the progress and shows the result itself.
    page.get_by_role("heading", name="Result", exact=True).wait_for(timeout=20_000)
    batch = EspayBatch.objects.get()
    assert batch.status == "partial"
    line = batch.lines.get(doc_no="INV-00001")
    for va in line.virtual_accounts.all():
        assert page.get_by_text(va.va_number, exact=True).is_visible()
    assert page.get_by_role("columnheader", name="VA BCA (014)").is_visible()
    rows_text = page.locator("[data-testid=lines] tbody tr").all_inner_texts()
    assert "INV-00002" in rows_text[0] and "Member rejected" in rows_text[0]  # errors first
    assert page.get_by_role("button", name="Retry 1 failed line").is_visible()
    assert page.get_by_role("link", name="VA numbers (XLSX)").is_visible()
