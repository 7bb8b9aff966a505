"""The reporter site's pages. They only render: everything a reporter sends goes through the public
JSON API (cases.api), called by the pages' scripts with hashes, never with files."""

from typing import Any

from django.utils.decorators import method_decorator
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.generic import TemplateView

from cases.services import PIN_DIGITS
from cases.validation import MAX_ITEMS_PER_REPORT
from partners.selectors import partner_names_for_public


class HomeView(TemplateView):
    template_name = "site/home.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(partners=partner_names_for_public(), **kwargs)


# The API is CSRF-protected for the site's own pages and the scripts send the token from the
# cookie, so every page that calls it must make sure the cookie is set before the first request.
@method_decorator(ensure_csrf_cookie, name="dispatch")
class ReporterPageView(TemplateView):
    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            pin_digits=PIN_DIGITS, max_files=MAX_ITEMS_PER_REPORT, **kwargs
        )


class ReportView(ReporterPageView):
    template_name = "site/report.html"


class StatusView(ReporterPageView):
    template_name = "site/status.html"
