"""Template context shared by every page: the main navigation and the user's saved views."""
from __future__ import annotations

from django.urls import NoReverseMatch, reverse
from django.utils.functional import SimpleLazyObject

from arbook.selectors.collections import saved_views
from arbook.services.collections import SAVABLE_PATHS

NAV = [("Worklist", "worklist"), ("Invoices", "invoice_list"), ("Customers", "customer_list"), ("Aging", "aging"),
       ("Reminders", "reminders"), ("Syncs", "sync_list"),
       ("Espay batches", "espay_batch_list")]


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
    savable = request.path in SAVABLE_PATHS
    return {"nav_items": items,
            # Lazy: read (one query each) only where the page shows them.
            "saved_views": SimpleLazyObject(lambda: saved_views(user=request.user)),
            "can_save_view": savable}
