"""The sandbox's shared people: the same debtor owes on Xendit and Munio, written each gateway's way."""
from __future__ import annotations

from datetime import date

import time_machine

from gateways.sandbox.core import Sandbox
from gateways.sandbox.people import person, pool_size

NOW = "2026-11-01T03:00:00Z"


@time_machine.travel(NOW, tick=False)
def test_some_customers_owe_on_both_gateways_with_emails_and_phones_written_differently():
    sandbox = Sandbox(seed=42, size=400, anchor=date(2026, 11, 1))
    xendit = list(sandbox.providers["xendit"].truth())
    munio = list(sandbox.providers["munio"].truth())
    x_emails = {t["customer_email"] for t in xendit if t["customer_email"]}
    m_emails = {t["customer_email"] for t in munio}
    shared = {e.lower() for e in x_emails} & m_emails
    assert len(shared) >= 5
    assert any(e != e.lower() and e.lower() in shared for e in x_emails)  # another case on Xendit
    assert all(e == e.lower() for e in m_emails)
    x_phones = {t["customer_phone"] for t in xendit if t["customer_phone"]}
    m_phones = {t["customer_phone"] for t in munio}
    assert x_phones and all(p.startswith("08") for p in x_phones)  # local form
    assert any(p.startswith("+62") for p in m_phones) and any(p.startswith("62") for p in m_phones)
    assert {"0" + p.lstrip("+")[2:] for p in m_phones} & x_phones  # the same numbers
    # About ten invoices per person, not one customer per invoice.
    assert len({e.lower() for e in x_emails}) <= pool_size(400)


def test_a_person_is_the_same_whoever_bills_them():
    assert person(7, 42) == person(7, 42)
    assert person(7, 42) != person(8, 42)
    p = person(7, 42)
    assert p.mobile_local().startswith("08") and p.mobile_international(True).startswith("+628")
