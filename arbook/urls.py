"""URL contract (DESIGN.md): /accounts/login/, /, /invoices/, /aging/, /syncs/, /espay/batches/,
/admin/, /healthz. Each area adds its routes here."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from arbook.views import health, overview

admin.site.site_header = "arbook administration"
admin.site.site_title = "arbook admin"

urlpatterns = [
    path("", overview.overview, name="overview"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # One module per area; each defines its own `urlpatterns`.
    path("", include("arbook.views.invoices")),
    path("", include("arbook.views.aging")),
    path("", include("arbook.views.syncs")),
    path("", include("arbook.views.espay")),
    path("", include("arbook.views.hooks")),
]
