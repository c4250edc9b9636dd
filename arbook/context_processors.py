"""Template context shared by every page: the main navigation."""
from __future__ import annotations

from django.urls import NoReverseMatch, reverse

NAV = [("Invoices", "invoice_list"), ("Customers", "customer_list"), ("Aging", "aging"), ("Syncs", "sync_list"), ("Espay batches", "espay_batch_list")]


def navigation(request):
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    current = getattr(getattr(request, "resolver_match", None), "url_name", "") or ""
    items = []
    for label, name in NAV:
        try:
            url = reverse(name)
        except NoReverseMatch:  # an area that is not routed (yet) is simply not shown
            continue
        items.append({"label": label, "url": url, "active": current.startswith(name.split("_")[0])})
    return {"nav_items": items}
