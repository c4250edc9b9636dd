"""Reads about customers: merge suggestions and possible double billings."""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, F, QuerySet

from arbook.models import Customer, DuplicateSuspect, Invoice

MAX_SUGGESTIONS = 200


@dataclass(frozen=True)
class Suggestion:
    """Customers whose names fold to the same key: perhaps one debtor, never merged without staff."""

    name_key: str
    customers: list[Customer]


def merge_suggestions(*, merchant_ids: list[int], limit: int = MAX_SUGGESTIONS) -> list[Suggestion]:
    """Groups of customers of one merchant sharing a folded name (on the (merchant, name_key) index)."""
    keys = list(Customer.objects.filter(merchant_id__in=merchant_ids).exclude(name_key="")
                .values("merchant_id", "name_key").annotate(n=Count("id")).filter(n__gt=1)
                .order_by("-n", "name_key")[:limit])
    if not keys:
        return []
    wanted = {(k["merchant_id"], k["name_key"]) for k in keys}
    found: dict[tuple[int, str], list[Customer]] = {}
    for c in (Customer.objects.filter(merchant_id__in={m for m, _k in wanted}, name_key__in={k for _m, k in wanted})
              .order_by("name", "id")):
        if (c.merchant_id, c.name_key) in wanted:
            found.setdefault((c.merchant_id, c.name_key), []).append(c)
    return [Suggestion(name_key=k["name_key"], customers=found[(k["merchant_id"], k["name_key"])]) for k in keys]


def duplicate_pairs(*, customer: Customer, limit: int | None = None) -> list[tuple[Invoice, Invoice]]:
    """The customer's possible double billings, each pair once (the first `limit`, when given)."""
    pairs = (DuplicateSuspect.objects.filter(customer=customer, invoice_id__lt=F("other_id"))
             .select_related("invoice", "other").order_by("invoice__issued_at", "invoice_id"))
    return [(p.invoice, p.other) for p in (pairs if limit is None else pairs[:limit])]


def suspected_duplicates(queryset: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """The invoices of `queryset` that may be billed twice (the invoice list's filter)."""
    return queryset.filter(duplicate_suspects__isnull=False).distinct()
