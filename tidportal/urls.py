from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

from tidportal import health, metrics

urlpatterns = [
    path("", include("cases.urls")),
    path("api/public/", include("cases.api.urls")),
    path("api/v1/", include("hashlists.api.urls")),
    path("api/v1/", include("partners.api.urls")),
    path("api/v1/", include("tidportal.api_docs")),
    path("api/compat/stopncii/v1/", include("partners.compat.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("healthz", health.healthz, name="healthz"),
    path("healthz/worker", health.healthz_worker, name="healthz-worker"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/dashboard/", include("tidportal.admin_site")),
    path("admin/", admin.site.urls),
]

# Under /api/, a URL that matches no route answers in the API's JSON error shape.
handler404 = "tidportal.api.not_found"
handler500 = "tidportal.api.server_error"
