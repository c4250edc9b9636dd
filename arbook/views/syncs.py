"""`/syncs/`: the sync runs (filterable, keyset-paginated), "Sync now" per credential, and a JSON
status endpoint that static/arbook/syncs.js polls so a run's progress shows without a reload."""
from __future__ import annotations

from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from arbook.forms.syncs import RunFilterForm, credential_label
from arbook.models import GatewayCredential, SyncRun
from arbook.scoping import get_scoped_or_404
from arbook.selectors import syncs as sel
from arbook.services.sync_schedule import sync_enqueue


@require_safe
def sync_list(request):
    credentials = sel.credentials_with_latest_run(user=request.user)
    form = RunFilterForm(request.GET, credentials=credentials)
    page = sel.sync_runs(user=request.user, **form.selection())
    for c in credentials:
        c.queued = sel.is_queued(c)
        c.display = credential_label(c)
    status_params = request.GET.copy()
    status_params.pop("after", None)
    return render(request, "arbook/syncs/list.html", {
        "credentials": credentials,
        "form": form,
        "page": page,
        "notes": form.notices(),
        "first_page": not request.GET.get("after"),
        "status_url": reverse("sync_status") + ("?" + status_params.urlencode() if status_params else ""),
        "active": any(c.queued or c.latest_run_status == SyncRun.Status.RUNNING for c in credentials),
    })


@require_POST
def sync_now(request, credential_id: int):
    """Enqueue a sync of one of the user's credentials (404 for anyone else's)."""
    credential = get_scoped_or_404(GatewayCredential.objects.select_related("merchant"), request.user,
                                   pk=credential_id)
    if sync_enqueue(credential=credential, full=False, trigger=SyncRun.Trigger.MANUAL):
        messages.success(request, f"Sync of {credential_label(credential)} queued; its progress shows below.")
    elif not credential.is_active:
        messages.warning(request, f"{credential_label(credential)} is inactive, so it is not synced.")
    else:
        messages.warning(request, f"{credential.get_provider_display()} has no list API to sync: its invoices "
                                  "come from uploads and payment notifications.")
    return redirect(reverse("sync_list") + f"?credential={credential.pk}")


@never_cache
@require_safe
def sync_status(request):
    """The newest runs and the queue, for the progress poller (scoped like the page)."""
    form = RunFilterForm(request.GET, credentials=list(sel.scoped_credentials(user=request.user)))
    selection = form.selection()
    return JsonResponse(sel.sync_status(user=request.user, credential_id=selection["credential_id"],
                                        status=selection["status"]))


urlpatterns = [
    path("syncs/", sync_list, name="sync_list"),
    path("syncs/status.json", sync_status, name="sync_status"),
    path("syncs/<int:credential_id>/run/", sync_now, name="sync_now"),
]
