"""The partner API's OpenAPI document and its browsable docs (DESIGN.md section 5).

tidportal/urls.py mounts these under /api/v1/: the document at ``schema/`` (YAML, or JSON with
``?format=json`` or ``Accept: application/json``) and Swagger UI at ``docs/``.

The docs page runs under the site's strict Content-Security-Policy unchanged (same origin only,
no inline script or style, no eval): Swagger UI's files come from drf-spectacular-sidecar's static
files, the split view serves the start-up script as a file of its own (``docs/?script``), and the
page's template moves drf-spectacular's inline <style> to a stylesheet. Swagger UI sets styles
through the DOM, which the policy allows. tests/browser/test_api_docs.py holds it to that.
"""

from django.urls import path
from django.views.decorators.cache import cache_page
from django.views.decorators.vary import vary_on_headers
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

import partners.api.schema  # noqa: F401 - registers the partner authentication schemes

app_name = "api-docs"

urlpatterns = [
    # Public and unthrottled, and some 90 ms to generate: built once per format and language
    # every five minutes, from the shared cache.
    path(
        "schema/",
        cache_page(300)(vary_on_headers("Accept", "Accept-Language")(SpectacularAPIView.as_view())),
        name="schema",
    ),
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-docs:schema", template_name="api_docs/swagger_ui.html"
        ),
        name="docs",
    ),
]
