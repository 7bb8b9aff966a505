"""The status page in a phone-sized Chromium: look a case up with its number and PIN, see the
status, timeline and platform counts, add files (hashed on the device), and withdraw."""

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from cases.models import Case
from cases.services import case_accept, case_create
from hashlists.models import HashEntry
from partners.models import MatchReport
from partners.services import partner_create
from tests.browser.reporting import (
    assert_page_is_clean,
    choose_files,
    focused,
    md5_of,
    phone_page,
    reset_throttles,
    tab_to,
    wait_for_hashes,
    write_media,
)
from tidkit.hashing import hash_image

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = {
    "en-US": {
        "check": "Check case",
        "case_number": "Case number",
        "pin": "PIN",
        "accepted": "Active on the list",
        "received": "Received",
        "matched": "2 platforms",
        "removed": "1 platform",
    },
    "es-ES": {
        "check": "Consultar caso",
        "case_number": "Número de caso",
        "pin": "PIN",
        "accepted": "Activo en la lista",
        "received": "Recibido",
        "matched": "2 plataformas",
        "removed": "1 plataforma",
    },
}
# Chromium logs every 4xx answer to fetch() in the console; these are the expected refusals.
REFUSED = "Failed to load resource: the server responded with a status of"


@pytest.fixture(autouse=True)
def _site_ready(default_list):  # noqa: ANN001, PT004 - the list cases go on
    reset_throttles()


@pytest.fixture(scope="module")
def media(tmp_path_factory):  # noqa: ANN001, ANN201
    return write_media(tmp_path_factory.mktemp("media"))


@pytest.fixture
def reported(media):  # noqa: ANN001, ANN201
    """A case as the report page leaves it: one photo, received, and its PIN."""
    return case_create(
        reporter="self", under_18_when_made=True, items=[hash_image(media.photo_jpeg)]
    )


@pytest.fixture
def accepted_with_matches(reported, default_list):  # noqa: ANN001, ANN201
    """The case accepted; two platforms found a copy and one of them removed it."""
    case, pin = reported
    staff = get_user_model().objects.create_superuser("lead-reviewer", password="pw")
    case_accept(case=case, staff=staff)
    entry = HashEntry.objects.filter(sources__media_item__case=case).first()
    now = timezone.now()
    for name, action in [("Photo Site", "removed"), ("Video Site", "pending_review")]:
        MatchReport.objects.create(
            partner=partner_create(name=name, readable_lists=[default_list]),
            entry=entry,
            client_ref=f"{name}-1",
            hash_type=entry.hash_type,
            matched_at=now,
            action=action,
            action_at=now,
        )
    return case, pin


def look_up(page, case_number, pin, text, *, sent=True):  # noqa: ANN001, ANN201
    """Fill in the form and check; when the page is expected to ask the server, wait for it."""
    page.get_by_label(text["case_number"]).fill(case_number)
    page.get_by_label(text["pin"], exact=True).fill(pin)
    button = page.get_by_role("button", name=text["check"])
    if not sent:
        button.click()
        return
    with page.expect_response("**/api/public/cases/status"):
        button.click()


def typed_sloppily(case_number: str) -> str:
    """How someone copies it from a note: small letters, no dashes."""
    return case_number.lower().replace("-", "")


@pytest.mark.parametrize("locale", ["en-US", "es-ES"])
def test_the_status_page_shows_status_timeline_and_what_platforms_did(
    browser, live_server, accepted_with_matches, locale
):
    case, pin = accepted_with_matches
    text = TEXT[locale]
    with phone_page(browser, live_server.url, locale=locale) as page:
        page.goto(live_server.url + "/status/")
        look_up(page, typed_sloppily(case.case_number), pin, text)

        heading = page.get_by_role("heading", level=1)
        expect(heading).to_contain_text(case.case_number)
        expect(heading).to_be_focused()
        expect(page.get_by_test_id("case-status")).to_contain_text(text["accepted"])
        timeline = page.get_by_test_id("timeline").get_by_role("listitem")
        expect(timeline).to_have_count(2)
        expect(timeline.first).to_contain_text(text["received"])
        expect(timeline.last).to_contain_text(text["accepted"])
        expect(page.get_by_test_id("platforms-matched")).to_have_text(text["matched"])
        expect(page.get_by_test_id("platforms-removed")).to_have_text(text["removed"])
        expect(page.get_by_test_id("add-submit")).to_be_hidden()

        # The PIN is not left in the page, and neither it nor the number went into any address.
        assert page.evaluate("document.getElementById('case-pin').value") == ""
        for request in page.traffic.requests:
            assert pin not in request.url and case.case_number not in request.url
        page.traffic.assert_no_file_left_the_device()
        assert_page_is_clean(page)

        page.get_by_role("button", name="Done" if locale == "en-US" else "Listo").click()
        expect(page.get_by_label(text["case_number"])).to_have_value("")


def test_more_files_can_be_added_and_refused_ones_are_explained(
    browser, live_server, reported, media
):
    case, pin = reported
    text = TEXT["en-US"]
    with phone_page(browser, live_server.url) as page:
        page.goto(live_server.url + "/status/")
        look_up(page, case.case_number, pin, text)
        page.get_by_role("button", name="Add more files").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Add more files to your case")

        # The photo already in the case, a new photo and a video.
        choose_files(page, [media.photo_jpeg, media.photo_png, media.video])
        wait_for_hashes(page, 3)
        page.get_by_test_id("add-submit").click()
        already = page.get_by_role("listitem").filter(has_text=media.photo_jpeg.name)
        expect(already).to_contain_text("already part of your case")
        expect(page.get_by_role("alert")).to_contain_text(media.photo_jpeg.name)
        assert case.items.count() == 1

        page.get_by_test_id("add-submit").click()
        expect(page.get_by_role("status").filter(has_text="We added")).to_contain_text(
            "1 image and 1 video"
        )
        expect(page.get_by_role("heading", level=1)).to_contain_text(case.case_number)
        assert sorted(case.items.values_list("md5", flat=True)) == sorted(
            md5_of(p) for p in media.photos + [media.video]
        )
        page.traffic.assert_no_file_left_the_device(*media.photos, media.video)
        errors = [e for e in page.console_errors if not e.startswith(REFUSED)]
        assert errors == []


def test_a_case_is_withdrawn_only_after_confirmation_by_keyboard_alone(
    browser, live_server, reported
):
    case, pin = reported
    with phone_page(browser, live_server.url) as page:
        page.goto(live_server.url + "/status/")
        tab_to(page, lambda el: el["id"] == "case-number")
        page.keyboard.type(typed_sloppily(case.case_number))
        tab_to(page, lambda el: el["id"] == "case-pin")
        page.keyboard.type(pin)
        tab_to(page, lambda el: el["text"] == "Check case")
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_be_focused()

        tab_to(page, lambda el: el["text"] == "Withdraw this case")
        page.keyboard.press("Enter")
        assert focused(page)["text"] == "Withdraw this case?"
        tab_to(page, lambda el: el["text"] == "No, keep my case")
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_contain_text(case.case_number)
        case.refresh_from_db()
        assert case.status == Case.Status.RECEIVED

        tab_to(page, lambda el: el["text"] == "Withdraw this case")
        page.keyboard.press("Enter")
        tab_to(page, lambda el: el["testid"] == "withdraw-confirm")
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("case-status")).to_have_text("Withdrawn")
        expect(page.get_by_role("status").filter(has_text="withdrawn")).to_be_visible()
        expect(page.get_by_role("button", name="Withdraw this case")).to_be_hidden()
        expect(page.get_by_role("button", name="Add more files")).to_be_hidden()
        case.refresh_from_db()
        assert case.status == Case.Status.WITHDRAWN
        assert_page_is_clean(page)


def test_a_wrong_pin_is_refused_kindly_then_the_case_locks(
    browser, live_server, reported, settings
):
    case, pin = reported
    settings.TID_PIN_MAX_FAILURES = 3
    text = TEXT["en-US"]
    wrong = "0" * len(pin) if pin != "0" * len(pin) else "1" * len(pin)
    with phone_page(browser, live_server.url) as page:
        page.goto(live_server.url + "/status/")
        # Mistakes the page can see are pointed out before anything is sent.
        look_up(page, "TID-123", pin[:3], text, sent=False)
        expect(page.get_by_text("A case number has 8 letters and numbers")).to_be_visible()
        expect(page.get_by_text(f"The PIN has {len(pin)} digits.")).to_be_visible()
        assert page.traffic.api_calls == []

        look_up(page, case.case_number, wrong, text)
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("We could not find a case with that number and PIN")
        expect(alert).to_be_focused()
        # The third wrong PIN locks this client out of the case; the next try is told to wait.
        for _ in range(2):
            look_up(page, case.case_number, wrong, text)
        expect(alert).not_to_contain_text("Please wait")
        look_up(page, case.case_number, wrong, text)
        expect(alert).to_contain_text("Please wait")
        # Now even the right PIN has to wait.
        look_up(page, case.case_number, pin, text)
        expect(alert).to_contain_text("You can try again in")
        expect(page.get_by_role("heading", level=1)).to_have_text("Check your case")
        errors = [e for e in page.console_errors if not e.startswith(REFUSED)]
        assert errors == []
