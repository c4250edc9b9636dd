"""The invoice list and detail (pull): the user's invoices, list rows, sort order, totals per
currency and an invoice's history.

The list is paged by keyset (`arbook.selectors.paginator`); its query string is read by
`arbook.filters`, its files written by `arbook.exports.invoices`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, QuerySet, Sum

from arbook.models import PROVIDER_CHOICES, GatewayCredential, Invoice, InvoiceEvent
from arbook.scoping import get_scoped_or_404, scope, visible_merchants
from arbook.selectors.paginator import Sort

SORT_FIELDS: dict[str, str] = {
    "issued_at": "Issued", "due_at": "Due", "paid_at": "Paid", "amount": "Amount",
    "outstanding": "Outstanding", "number": "Invoice", "customer_name": "Customer",
}
DEFAULT_SORT = "-issued_at"
PAGE_SIZES = (25, 50, 100, 250)
DEFAULT_PAGE_SIZE = 50
#: What the list reads per row (never `raw`, which can be large).
LIST_COLUMNS = ("id", "merchant_id", "credential_id", "customer_id", "provider", "external_id", "number",
                "customer_name", "customer_email", "currency", "amount", "outstanding", "status", "issued_at", "due_at", "paid_at",
                "merchant__name", "merchant__timezone")
HISTORY_LIMIT = 500
PROVIDER_LABELS = dict(PROVIDER_CHOICES)


# -- scoped inputs ---------------------------------------------------------------------------

def merchant_choices(*, user) -> list[tuple[int, str, str]]:
    """(id, name, timezone) of the merchants `user` may see: the filter's choices and zones."""
    return list(visible_merchants(user).order_by("name", "id").values_list("id", "name", "timezone"))


def credential_choices(*, user) -> list[tuple[int, str]]:
    """(id, "Merchant · Gateway · label") of the user's gateway accounts (small: a few per merchant)."""
    rows = (scope(GatewayCredential.objects.all(), user)
            .order_by("merchant__name", "provider", "label", "id")
            .values_list("id", "merchant__name", "provider", "label"))
    return [(pk, " · ".join(x for x in (m, PROVIDER_LABELS.get(p, p), label) if x)) for pk, m, p, label in rows]


def scoped_invoices(*, user, merchant_ids: Iterable[int] | None = None) -> QuerySet[Invoice]:
    """The invoices `user` may see (`merchant_ids`: see `scope`)."""
    return scope(Invoice.objects.all(), user, merchant_ids=merchant_ids)


def list_queryset(queryset: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """What a list row needs in one query: the merchant (name, zone) joined, the payload left out."""
    return queryset.select_related("merchant").only(*LIST_COLUMNS)


# -- sorting -------------------------------------------------------------------------------

def invoice_sort(text: str | None) -> Sort | None:
    """The list order `?sort=` names (`SORT_FIELDS`, `-` for descending); None for anything else."""
    return Sort.parse(text, model=Invoice, fields=SORT_FIELDS)


DEFAULT = invoice_sort(DEFAULT_SORT)


# -- totals ----------------------------------------------------------------------------------

@dataclass
class CurrencyTotal:
    currency: str
    count: int
    amount: Decimal  # sum of the known amounts
    amount_unknown: int  # invoices whose amount the gateway does not give (Faspay's list)
    outstanding: Decimal
    outstanding_unknown: int


def invoice_totals(queryset: QuerySet[Invoice], *, outstanding: str = "outstanding") -> list[CurrencyTotal]:
    """Count, amount and outstanding of `queryset` per currency, in one aggregate query.

    Never summed across currencies. Unknown amounts are counted, not treated as zero, so the page
    can say "3 invoices without an amount". For an aging drill-down pass
    `outstanding="aging_outstanding"`: what each invoice owed on the as-of date, as the cell sums.
    """
    rows = (queryset.order_by().values("currency")
            .annotate(n=Count("pk"), amount_sum=Sum("amount"), amount_known=Count("amount"),
                      outstanding_sum=Sum(outstanding), outstanding_known=Count(outstanding))
            .order_by("currency"))
    return [CurrencyTotal(currency=r["currency"], count=r["n"], amount=r["amount_sum"] or Decimal(0),
                          amount_unknown=r["n"] - r["amount_known"], outstanding=r["outstanding_sum"] or Decimal(0),
                          outstanding_unknown=r["n"] - r["outstanding_known"])
            for r in rows]


# -- detail ----------------------------------------------------------------------------------

def invoice_for_user(*, user, pk: int) -> Invoice:
    """The invoice if `user` may see it; 404 otherwise (never 403: that would confirm it exists)."""
    return get_scoped_or_404(Invoice.objects.select_related("merchant", "credential"), user, pk=pk)


def invoice_history(*, invoice: Invoice, limit: int = HISTORY_LIMIT) -> list[InvoiceEvent]:
    """The newest `limit` events, newest first, with the sync run that saw each."""
    return list(invoice.events.select_related("sync_run").order_by("-seen_at", "-id")[:limit])
