"""`/reminders/`: today's dry run, what went out, what was left out and why; a step's preview; and
a customer's reminder settings (opt-out, address). Thin: `arbook.selectors.reminders` reads,
`arbook.services.reminders` decides."""
from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from arbook import params
from arbook.forms.customers import ReminderSettingsForm
from arbook.models import ReminderStep
from arbook.scoping import get_scoped_or_404, visible_merchants
from arbook.selectors import reminders as selectors
from arbook.selectors.customer_pages import customer_for_user
from arbook.services.reminders import customer_reminders_set


def reminders(request):
    merchants = list(visible_merchants(request.user).order_by("name", "id"))
    preview, notices = None, []
    if request.GET.get("preview"):
        try:
            pk = params.parse_int(request.GET["preview"], min_value=1, max_value=params.MAX_ID, what="The step")
        except params.ParamError as exc:
            notices.append(str(exc))
        else:
            step = get_scoped_or_404(ReminderStep.objects.select_related("merchant"), request.user, pk=pk)
            preview = (step, selectors.step_preview(step=step))
    ids = [m.pk for m in merchants]
    return render(request, "arbook/reminders/page.html", {
        "plans": selectors.reminders_plan(merchants=merchants), "sent": selectors.recent_messages(merchant_ids=ids),
        "drops": selectors.recent_drops(merchant_ids=ids), "preview": preview, "notices": notices,
        "shown": selectors.SHOWN, "recent_days": selectors.RECENT_DAYS, "has_merchants": bool(merchants),
    })


@require_POST
def reminder_settings(request, pk: int):
    customer = customer_for_user(user=request.user, pk=pk)
    form = ReminderSettingsForm(request.POST)
    back = reverse("customer_detail", args=[customer.pk])
    if not form.is_valid():
        messages.error(request, "Reminder settings not changed: " + " ".join(
            e for errors in form.errors.values() for e in errors))
        return redirect(back)
    customer_reminders_set(customer=customer, user=request.user, opt_out=form.cleaned_data["opt_out"],
                           email=form.cleaned_data["email"])
    messages.success(request, "Reminder settings saved.")
    return redirect(back)


urlpatterns = [
    path("reminders/", reminders, name="reminders"),
    path("customers/<int:pk>/reminders/", reminder_settings, name="reminder_settings"),
]
