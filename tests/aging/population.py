"""A crafted invoice population whose aging is worked out by hand (see the expected tables)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from tests.factories import CredentialFactory, InvoiceEventFactory, InvoiceFactory, MerchantFactory


def day(n: int) -> dt.datetime:
    """Noon (server zone) `n` days before today (negative: after today)."""
    today = timezone.localdate()
    return dt.datetime.combine(today - dt.timedelta(days=n), dt.time(12)).replace(
        tzinfo=timezone.get_current_timezone())


def build(user) -> dict:
    """Merchant A (user is a member; Faspay + Xendit credentials) and merchant B (not a member)."""
    a, b = MerchantFactory(name="Alpha Trading"), MerchantFactory(name="Beta Secret")
    a.members.add(user)
    fas = CredentialFactory(merchant=a, provider="faspay")
    xen = CredentialFactory(merchant=a, provider="xendit", label="xen")
    other = CredentialFactory(merchant=b)
    D = Decimal

    def inv(key, cred=fas, **kw):
        kw.setdefault("issued_at", day(120))
        kw.setdefault("customer_name", "Customer Main")
        return key, InvoiceFactory(credential=cred, number=key, **kw)

    rows = dict([
        inv("I1", status="open", outstanding=D("100"), due_at=day(-5)),
        inv("I2", status="open", outstanding=D("200"), due_at=day(10), customer_name="Customer Two"),
        inv("I3", xen, status="open", outstanding=D("300"), due_at=day(45)),
        inv("I4", status="partially_paid", outstanding=D("50"), due_at=day(100)),
        inv("I5", status="failed", outstanding=D("70"), due_at=None),
        inv("I6", status="expired", outstanding=D("80"), due_at=day(70)),
        inv("I7", xen, status="unknown", outstanding=D("90"), due_at=day(1)),
        inv("I8", status="open", outstanding=D("-25"), due_at=day(20)),
        inv("I9", status="paid", outstanding=D("0"), amount=D("400"), paid_amount=D("400"), paid_at=day(2),
            due_at=day(30), issued_at=day(60)),
        inv("I10", status="draft", outstanding=D("500"), due_at=day(10)),
        inv("I11", status="cancelled", outstanding=D("600"), due_at=day(10)),
        inv("I12", status="open", outstanding=D("1000"), due_at=day(-29), issued_at=day(1)),
        inv("I13", status="processing", outstanding=D("150"), due_at=day(-10)),
        inv("I14", xen, status="open", outstanding=D("10.50"), due_at=day(3), currency="USD"),
        inv("I15", status="charged_back", outstanding=D("60"), due_at=day(95), paid_at=day(200)),
        inv("I16", status="paid", outstanding=D("0"), amount=D("700"), paid_amount=D("700"), paid_at=day(40),
            due_at=day(50), issued_at=day(80)),
        inv("B1", other, status="open", outstanding=D("9999"), due_at=day(10)),
    ])
    # I13 was open until 3 days ago; I15 was paid 200 days ago and reversed 2 days ago.
    InvoiceEventFactory(invoice=rows["I13"], seen_at=day(3), status_before="open", status_after="processing",
                        outstanding_before=D("150"), outstanding_after=D("150"))
    InvoiceEventFactory(invoice=rows["I15"], seen_at=day(2), status_before="paid", status_after="charged_back",
                        outstanding_before=D("0"), outstanding_after=D("60"), paid_at_before=day(200),
                        paid_at_after=day(200))
    return {"a": a, "b": b, "fas": fas, "xen": xen, "inv": rows}


#: Ungrouped, due basis, as of today, default buckets: {(row, bucket): (amount, count)} for IDR.
TODAY_DUE = {
    ("open", "current"): (D := Decimal)("1100"), ("open", "1-30"): D("200"), ("open", "31-60"): D("300"),
    ("partially_paid", "91-"): D("50"), ("failed", "current"): D("70"), ("expired", "61-90"): D("80"),
    ("unknown", "1-30"): D("90"), ("credit", "1-30"): D("-25"), ("processing", "current"): D("150"),
    ("charged_back", "91-"): D("60"),
}
#: As of five days ago: I12 not issued yet; I9 (paid 2 days ago) was owed; I13 was open;
#: I15 was paid (reversed later); I16 was paid 40 days ago. Ages shift by five days.
PAST5_DUE = {
    ("open", "current"): D("100") + D("150"),  # I1 (due in 10 days then), I13 (was open, due in 5 days)
    ("open", "1-30"): D("200") + D("400"),  # I2 (5 days late), I9 (25 days late, owed then)
    ("open", "31-60"): D("300"),  # I3 (40)
    ("partially_paid", "91-"): D("50"),  # I4 (95)
    ("failed", "current"): D("70"),
    ("expired", "61-90"): D("80"),  # I6 (65)
    ("unknown", "current"): D("90"),  # I7 due 1 day ago = 4 days after the as-of date
    ("credit", "1-30"): D("-25"),  # I8 (15)
}
