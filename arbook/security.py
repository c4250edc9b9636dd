"""Helpers of the security settings that need code (no Django model import: settings load them).

- `client_ip`: the address django-axes throttles sign-ins by (AXES_CLIENT_IP_CALLABLE).
"""
from __future__ import annotations

from django.conf import settings


def client_ip(request) -> str:
    """The client's address: REMOTE_ADDR, or, behind ARBOOK_PROXY_COUNT trusted reverse proxies
    that each append to X-Forwarded-For, the address the outermost of them saw.

    Only the entries the trusted proxies appended are believed (counted from the right); whatever
    a client sends in its own X-Forwarded-For is ignored, so it cannot pick its address to dodge
    the lock-out or to lock somebody else out.
    """
    remote = request.META.get("REMOTE_ADDR", "") or ""
    count = getattr(settings, "ARBOOK_PROXY_COUNT", 0)
    if count <= 0:
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    return hops[-count] if len(hops) >= count else remote
