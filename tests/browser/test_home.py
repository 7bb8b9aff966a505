"""The landing page in a real phone-sized Chromium: readable, self-contained, keyboard-usable."""

from playwright.sync_api import expect


def test_home_page_renders_with_its_styles_and_nothing_from_elsewhere(page, live_server):
    page.goto(live_server.url + "/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("explicit images")
    # The stylesheet loaded (served by the project) and applied under the strict CSP.
    assert page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth") != "none"
    assert page.console_errors == []  # no CSP violations
    assert page.outside_requests == []  # no CDN, fonts or analytics


def test_the_first_tab_stop_skips_to_the_content(page, live_server):
    page.goto(live_server.url + "/")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused.strip() == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_the_language_can_be_switched_without_a_mouse(page, live_server):
    page.goto(live_server.url + "/")
    page.get_by_label("Language").select_option("es")
    page.get_by_role("button", name="Change").press("Enter")
    expect(page.locator("html")).to_have_attribute("lang", "es")
