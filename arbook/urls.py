"""URL contract (DESIGN.md): /accounts/login/, /, /invoices/, /aging/, /syncs/, /espay/batches/,
/customers/, /admin/, /healthz. Each area adds its routes here.

Read-only pages answer only GET and HEAD (anything else is 405, not the page): the routes named
in `READ_ONLY` are wrapped in `require_safe` here, so the views stay thin and a new read-only
route is one name away. Routes with a legitimate POST (Sync now, the Espay upload and its
confirm/retry/resume/discard, sign-in/out, the payment notification receivers) keep their own
method rules.
"""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, include, path
from django.views.decorators.http import require_safe

from arbook.dbrouting import report_read
from arbook.views import aging, collections, customers, espay, health, hooks, invoices, overview, reminders, syncs

admin.site.site_header = "arbook administration"
admin.site.site_title = "arbook admin"

#: Routes that only read: GET/HEAD, 405 for POST, PUT, PATCH, DELETE, ...
READ_ONLY = frozenset({
    "overview", "invoice_list", "invoice_detail", "aging", "sync_list", "sync_status",
    "espay_batch_list", "espay_batch_detail", "espay_batch_progress", "espay_batch_export",
    "espay_batch_problems", "espay_batch_file", "espay_template",
    "customer_list", "customer_detail", "customer_statement", "customer_suggestions", "worklist",
    "reminders",
})


#: Report reads (lists, totals, aging, overview, exports, customer pages): served from the read
#: replica when `DATABASE_REPLICA_URL` configures one (arbook.dbrouting).
REPORT_READS = frozenset({
    "overview", "invoice_list", "invoice_detail", "aging",
    "customer_list", "customer_detail", "customer_statement", "customer_suggestions",
})


def read_only(patterns: list) -> list:
    """`patterns` with the views of the routes named in READ_ONLY wrapped in `require_safe`, and
    those named in REPORT_READS in `report_read`."""
    out = []
    for p in patterns:
        if isinstance(p, URLPattern) and p.name in READ_ONLY:
            view = report_read(p.callback) if p.name in REPORT_READS else p.callback
            p = URLPattern(p.pattern, require_safe(view), p.default_args, p.name)
        out.append(p)
    return out


urlpatterns = read_only([
    path("", overview.overview, name="overview"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]) + [
    # One module per area; each defines its own `urlpatterns`.
    path("", include(read_only(invoices.urlpatterns))),
    path("", include(read_only(aging.urlpatterns))),
    path("", include(read_only(syncs.urlpatterns))),
    path("", include(read_only(espay.urlpatterns))),
    path("", include(read_only(customers.urlpatterns))),
    path("", include(read_only(collections.urlpatterns))),
    path("", include(read_only(reminders.urlpatterns))),
    path("", include(hooks.urlpatterns)),
]

_routed = {p.name for module in (invoices, aging, syncs, espay, customers, collections, reminders)
           for p in module.urlpatterns} | {"overview"}
if REPORT_READS - READ_ONLY:
    raise ImproperlyConfigured(f"REPORT_READS must be read-only routes: {sorted(REPORT_READS - READ_ONLY)}")
if READ_ONLY - _routed:  # a renamed route must not silently lose its method rule
    raise ImproperlyConfigured(f"READ_ONLY names routes that do not exist: {sorted(READ_ONLY - _routed)}")
