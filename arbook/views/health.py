"""`/healthz`: is the database reachable, and the broker? For load balancers and `make run`."""
from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from arbook.services.health import broker_check, database_check


@never_cache
@require_safe
@login_not_required
def healthz(request):
    checks = {"database": database_check(), "broker": broker_check()}
    ok = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ok else "fail", **checks}, status=200 if ok else 503)
