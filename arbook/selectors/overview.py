"""What the overview page shows, scoped to the user's merchants."""
from __future__ import annotations

from typing import Any

from django.db.models import Count, Max

from arbook.models import GatewayCredential, Invoice, SyncRun
from arbook.scoping import scope, visible_merchants


def overview_context(*, user) -> dict[str, Any]:
    merchants = visible_merchants(user)
    credentials = (scope(GatewayCredential.objects.select_related("merchant"), user)
                   .order_by("merchant__name", "provider", "label"))
    runs = scope(SyncRun.objects.all(), user, merchant_field="credential__merchant")
    invoices = scope(Invoice.objects.all(), user)
    last_run = runs.aggregate(last=Max("finished_at"))["last"]
    per_currency = list(invoices.values("currency").annotate(n=Count("id")).order_by("currency"))
    return {
        "merchants": merchants,
        "credentials": credentials,
        "has_synced": runs.exists(),
        "last_sync_finished_at": last_run,
        "invoice_counts": per_currency,
    }
