"""The partner API docs page (/api/v1/docs/) in a real Chromium: Swagger UI served by the project
under the site's strict Content-Security-Policy, listing every operation, and usable."""

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from partners.services import api_key_create

CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


@pytest.fixture
def docs(page, live_server):
    page.add_init_script(CSP_VIOLATIONS)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(live_server.url + "/api/v1/docs/")
    expect(page.locator(".opblock").first).to_be_visible()
    return page


def test_the_docs_list_every_operation_of_the_schema_with_nothing_from_elsewhere(docs, live_server):
    schema = Client().get("/api/v1/schema/", {"format": "json"}).json()
    documented = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    shown = {
        (
            block.locator(".opblock-summary-method").inner_text().strip(),
            block.locator(".opblock-summary-path").get_attribute("data-path"),
        )
        for block in docs.locator(".opblock").all()
    }
    assert documented and shown == documented
    assert docs.evaluate("window.cspViolations") == []
    assert docs.console_errors == []  # nothing refused, nothing broken
    assert docs.outside_requests == []  # no CDN: Swagger UI's files come from this origin
    # The site's own strict policy: no inline script or style, no eval, no other origin.
    policy = Client().get("/api/v1/docs/")["Content-Security-Policy"]
    assert policy == settings.CONTENT_SECURITY_POLICY and "unsafe" not in policy


def test_a_partner_can_try_an_endpoint_with_its_key(docs, partner):
    _key, raw = api_key_create(partner=partner, name="docs", scopes=["lists:read"])
    docs.get_by_role("button", name="Authorize").first.click()
    dialog = docs.locator(".auth-container").filter(has_text="PartnerKey")
    dialog.get_by_label("auth-bearer-value").fill(raw)
    dialog.get_by_role("button", name="Apply credentials").click()
    docs.locator(".dialog-ux .close-modal").click()

    operation = docs.locator("#operations-lists-lists_list")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    live = operation.locator(".live-responses-table")
    expect(live.locator("tr.response .response-col_status")).to_have_text("200")
    expect(live.locator("tr.response .response-col_description")).to_contain_text('"take-it-down"')
    assert docs.evaluate("window.cspViolations") == []
    assert docs.console_errors == []
