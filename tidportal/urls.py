from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView
from django.views.i18n import JavaScriptCatalog

from tidportal import views

admin.site.site_header = "tidportal staff"
admin.site.site_title = "tidportal staff"
admin.site.index_title = "Case work, hash lists and partners"

urlpatterns = [
    path("", TemplateView.as_view(template_name="site/home.html"), name="home"),
    path("api/public/", include("cases.api.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
