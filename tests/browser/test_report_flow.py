"""The report page, end to end in a phone-sized Chromium: eligibility, choosing and hashing real
photos and a video on the device, review, sending, and the receipt.

Each test checks what reached the server (the database) against the files themselves, and that
no request made by the page carried anything but small JSON.
"""

import re

import pytest
from playwright.sync_api import expect

from cases.models import CASE_NUMBER_PATTERN, Case
from tests.browser.reporting import (
    assert_image_hashes_agree,
    assert_page_is_clean,
    choose_files,
    focused,
    hashed_items,
    md5_of,
    phone_page,
    reset_throttles,
    tab_to,
    wait_for_hashes,
    write_media,
)
from tidkit.hashing import hash_video

pytestmark = pytest.mark.django_db(transaction=True)

# Whether an object URL still serves its file (as an image: the CSP allows blob: images only).
LOAD_AS_IMAGE = """url => new Promise(resolve => {
    const img = new Image();
    img.onload = () => resolve("readable");
    img.onerror = () => resolve("revoked");
    img.src = url;
})"""

TEXT = {
    "en-US": {
        "lang": "en",
        "start": "Before you start",
        "reporter": {
            "self": "Me. I am the person in the images.",
            "parent": "I am their parent or guardian.",
        },
        "yes": "Yes, under 18",
        "no": "No, 18 or older",
        "continue": "Continue",
        "files": "Choose the images and videos",
        "review": "Check and send",
        "receipt": "Your report was sent",
        "warning": "This is the only time you will see it",
        "adult": "This service is for images made before 18",
        "back": "Back",
        "print": "Print",
    },
    "es-ES": {
        "lang": "es",
        "start": "Antes de empezar",
        "reporter": {
            "self": "Yo. Soy la persona de las imágenes.",
            "parent": "Soy su madre, padre o tutor.",
        },
        "yes": "Sí, menor de 18",
        "no": "No, 18 o más",
        "continue": "Continuar",
        "files": "Elige las imágenes y los vídeos",
        "review": "Revisa y envía",
        "receipt": "Tu denuncia se ha enviado",
        "warning": "Es la única vez que lo verás",
        "adult": "Este servicio es para imágenes hechas antes de los 18",
        "back": "Atrás",
        "print": "Imprimir",
    },
}


@pytest.fixture(autouse=True)
def _site_ready(default_list):  # noqa: ANN001, PT004 - the list reports go on
    reset_throttles()


@pytest.fixture(scope="module")
def media(tmp_path_factory):  # noqa: ANN001, ANN201
    return write_media(tmp_path_factory.mktemp("media"))


def answer_eligibility(page, text, reporter="self"):  # noqa: ANN001, ANN201
    expect(page.get_by_role("heading", level=1)).to_have_text(text["start"])
    page.get_by_label(text["reporter"][reporter]).check()
    page.get_by_label(text["yes"]).check()
    page.get_by_role("button", name=text["continue"]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(text["files"])


@pytest.mark.parametrize(("locale", "reporter"), [("en-US", "self"), ("es-ES", "parent")])
def test_a_report_sends_only_hashes_that_match_the_files(
    browser, live_server, media, locale, reporter
):
    text = TEXT[locale]
    with phone_page(browser, live_server.url, locale=locale) as page:
        page.goto(live_server.url + "/report/")
        expect(page.locator("html")).to_have_attribute("lang", text["lang"])
        answer_eligibility(page, text, reporter)

        choose_files(page, [*media.photos, media.video])
        wait_for_hashes(page, 3)
        # Each file shows a local thumbnail (an object URL: nothing fetched from anywhere).
        thumbnails = page.locator("[data-testid=hashed-item] img, [data-testid=hashed-item] video")
        expect(thumbnails).to_have_count(3)
        assert all(
            src.startswith("blob:") for src in thumbnails.evaluate_all("t => t.map(e => e.src)")
        )
        images = [i for i in hashed_items(page) if i["media_type"] == "image"]
        (video,) = [i for i in hashed_items(page) if i["media_type"] == "video"]
        for item, path in zip(images, media.photos, strict=True):
            assert_image_hashes_agree(item, path)
            assert 0 <= int(item["pdq_quality"]) <= 100
        assert video["md5"] == md5_of(media.video)

        page.get_by_role("button", name=text["continue"]).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(text["review"])
        expect(page).to_have_title(re.compile("^" + text["review"]))  # the step names the tab
        page.get_by_test_id("submit").click()

        expect(page.get_by_role("heading", level=1)).to_have_text(text["receipt"])
        case_number = page.get_by_test_id("case-number").inner_text()
        pin = page.get_by_test_id("case-pin").inner_text()
        assert re.fullmatch(CASE_NUMBER_PATTERN, case_number)
        assert re.fullmatch(r"\d{8}", pin)
        expect(page.get_by_text(text["warning"])).to_be_visible()
        # The files are forgotten once sent.
        expect(page.get_by_test_id("hashed-item")).to_have_count(0)

        case = Case.objects.get(case_number=case_number)
        assert case.reporter == reporter and case.under_18_when_made
        image_rows = case.items.filter(media_type="image").order_by("id")
        for row, path in zip(image_rows, media.photos, strict=True):
            assert_image_hashes_agree({"md5": row.md5, "pdq": row.pdq, "phash": row.phash}, path)
        video_row = case.items.get(media_type="video")
        assert video_row.md5 == md5_of(media.video)
        assert len(video_row.vpdq) == int(video["vpdq_frames"])
        # One frame a second from t=0, as tidkit reads the same file (a frame more or less at
        # the very end depends on how each decoder rounds the duration).
        assert abs(len(video_row.vpdq) - len(hash_video(media.video)["vpdq"])) <= 1

        (body,) = page.traffic.bodies("/api/public/reports")
        assert set(body) == {"reporter", "under_18_when_made", "items"}
        assert {key for item in body["items"] for key in item} <= {
            "media_type", "md5", "pdq", "pdq_quality", "phash", "vpdq",
        }  # fmt: skip
        page.traffic.assert_no_file_left_the_device(*media.photos, media.video)
        assert_page_is_clean(page)


def test_the_whole_report_works_by_keyboard_alone(browser, live_server, media):
    text = TEXT["en-US"]
    with phone_page(browser, live_server.url) as page:
        page.goto(live_server.url + "/report/")
        tab_to(page, lambda el: el["type"] == "radio" and el["value"] == "self")
        page.keyboard.press("Space")
        tab_to(page, lambda el: el["type"] == "radio" and el["value"] == "yes")
        page.keyboard.press("Space")
        tab_to(page, lambda el: el["text"] == text["continue"])
        page.keyboard.press("Enter")

        # The new step's heading has the focus, and the next stop is the file chooser.
        assert focused(page)["text"] == text["files"]
        page.keyboard.press("Tab")
        assert focused(page)["testid"] == "file-input"
        page.locator(":focus").set_input_files([str(p) for p in media.photos])
        wait_for_hashes(page, 2)

        # Remove the second photo from the keyboard; the focus stays in the list.
        tab_to(page, lambda el: el["label"] == f"Remove {media.photo_png.name}")
        page.keyboard.press("Enter")
        wait_for_hashes(page, 1)
        assert focused(page)["label"] == f"Remove {media.photo_jpeg.name}"

        tab_to(page, lambda el: el["text"] == text["continue"])
        page.keyboard.press("Enter")
        assert focused(page)["text"] == text["review"]
        tab_to(page, lambda el: el["testid"] == "submit")
        page.keyboard.press("Enter")

        expect(page.get_by_role("heading", level=1)).to_have_text(text["receipt"])
        assert focused(page)["text"] == text["receipt"]
        case = Case.objects.get(case_number=page.get_by_test_id("case-number").inner_text())
        assert list(case.items.values_list("md5", flat=True)) == [md5_of(media.photo_jpeg)]
        page.traffic.assert_no_file_left_the_device(*media.photos)
        assert_page_is_clean(page)


def test_a_removed_file_is_not_sent_and_its_thumbnail_is_released(browser, live_server, media):
    text = TEXT["en-US"]
    with phone_page(browser, live_server.url) as page:
        page.goto(live_server.url + "/report/")
        answer_eligibility(page, text)
        choose_files(page, media.photos)
        wait_for_hashes(page, 2)
        coffee = page.get_by_test_id("hashed-item").filter(has_text=media.photo_png.name)
        thumbnail = coffee.locator("img").get_attribute("src")
        assert page.evaluate(LOAD_AS_IMAGE, thumbnail) == "readable"

        page.get_by_role("button", name=f"Remove {media.photo_png.name}").click()
        wait_for_hashes(page, 1)
        # The object URL was revoked: nothing on the page can read the file through it any more.
        assert page.evaluate(LOAD_AS_IMAGE, thumbnail) == "revoked"
        # (Chromium may log that refused load as a console error: one this test caused itself.)
        page.console_errors[:] = [e for e in page.console_errors if "ERR_FILE_NOT_FOUND" not in e]
        page.get_by_role("button", name=text["continue"]).click()
        page.get_by_test_id("submit").click()
        expect(page.get_by_test_id("case-number")).to_be_visible()

        case = Case.objects.get(case_number=page.get_by_test_id("case-number").inner_text())
        assert list(case.items.values_list("md5", flat=True)) == [md5_of(media.photo_jpeg)]
        assert_page_is_clean(page)


def test_files_that_are_not_pictures_get_their_own_message_and_are_left_out(
    browser, live_server, media
):
    text = TEXT["en-US"]
    with phone_page(browser, live_server.url) as page:
        page.goto(live_server.url + "/report/")
        answer_eligibility(page, text)
        choose_files(page, [media.text, media.broken_jpeg, media.photo_jpeg])
        wait_for_hashes(page, 1)

        files = page.get_by_role("list", name="Your files").get_by_role("listitem")
        expect(files.filter(has_text=media.text.name)).to_contain_text("not an image or a video")
        # A damaged file: the library says why (damaged, unreadable...), the page in plain words.
        expect(files.filter(has_text=media.broken_jpeg.name)).to_contain_text("it was left out")
        expect(files.filter(has_text=media.broken_jpeg.name)).to_have_attribute(
            "data-state", "failed"
        )
        # Choosing the same photo again counts it once.
        choose_files(page, [media.photo_jpeg])
        expect(files).to_have_count(4)
        expect(files.last).to_contain_text("counted once")

        page.get_by_role("button", name=text["continue"]).click()
        page.get_by_test_id("submit").click()
        expect(page.get_by_test_id("case-number")).to_be_visible()
        case = Case.objects.get(case_number=page.get_by_test_id("case-number").inner_text())
        assert list(case.items.values_list("md5", flat=True)) == [md5_of(media.photo_jpeg)]
        assert_page_is_clean(page)


def test_the_questions_must_be_answered_and_adults_are_pointed_elsewhere(browser, live_server):
    text = TEXT["en-US"]
    with phone_page(browser, live_server.url) as page:
        page.goto(live_server.url + "/report/")
        page.get_by_role("button", name=text["continue"]).click()
        expect(page.get_by_text("Choose who is making this report.")).to_be_visible()
        expect(page.get_by_text("Choose yes or no.")).to_be_visible()
        expect(page.get_by_label(text["reporter"]["self"])).to_be_focused()
        expect(page.get_by_label(text["reporter"]["self"])).to_have_attribute(
            "aria-invalid", "true"
        )

        page.get_by_label(text["reporter"]["self"]).check()
        page.get_by_label(text["no"]).check()
        page.get_by_role("button", name=text["continue"]).click()
        heading = page.get_by_role("heading", level=1)
        expect(heading).to_have_text(text["adult"])
        expect(heading).to_be_focused()
        expect(page.get_by_role("link", name="StopNCII.org")).to_have_attribute(
            "href", "https://stopncii.org/"
        )
        # Nothing was sent: the answers stay in the page.
        assert page.traffic.api_calls == []
        assert Case.objects.count() == 0

        page.get_by_role("button", name=text["back"]).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(text["start"])
        assert_page_is_clean(page)


def test_refused_files_are_explained_beside_the_file_and_the_rest_can_be_sent(
    browser, live_server, media
):
    """The server names refused items (``items.1.pdq``); the page shows it on that file."""
    text = TEXT["en-US"]
    with phone_page(browser, live_server.url) as page:

        def corrupt_second_item(route):  # noqa: ANN001, ANN202 - as a broken client would
            body = route.request.post_data_json
            if len(body["items"]) == 2:
                body["items"][1]["pdq"] = "not-a-hash"
            route.continue_(post_data=body)

        page.route("**/api/public/reports", corrupt_second_item)
        page.goto(live_server.url + "/report/")
        answer_eligibility(page, text)
        choose_files(page, media.photos)
        wait_for_hashes(page, 2)
        page.get_by_role("button", name=text["continue"]).click()
        page.get_by_test_id("submit").click()

        alert = page.get_by_role("alert").filter(has_text=media.photo_png.name)
        expect(alert).to_be_visible()
        expect(alert).to_be_focused()
        assert Case.objects.count() == 0
        # Back on the list of files, the refused one says why and is no longer counted.
        page.get_by_role("button", name=text["back"]).click()
        refused = page.get_by_role("listitem").filter(has_text=media.photo_png.name)
        expect(refused).to_contain_text("64 lowercase hexadecimal characters")
        expect(page.get_by_test_id("hashed-item")).to_have_count(1)

        page.get_by_role("button", name=text["continue"]).click()
        page.get_by_test_id("submit").click()
        expect(page.get_by_test_id("case-number")).to_be_visible()
        case = Case.objects.get()
        assert list(case.items.values_list("md5", flat=True)) == [md5_of(media.photo_jpeg)]
        page.unroute("**/api/public/reports")
        assert page.console_errors == [  # the 400 itself is logged by Chromium, nothing else
            "Failed to load resource: the server responded with a status of 400 (Bad Request)"
        ]


def test_the_receipt_prints_on_its_own(browser, live_server, media):
    text = TEXT["en-US"]
    with phone_page(browser, live_server.url) as page:
        page.goto(live_server.url + "/report/")
        answer_eligibility(page, text)
        choose_files(page, [media.photo_jpeg])
        wait_for_hashes(page, 1)
        page.get_by_role("button", name=text["continue"]).click()
        page.get_by_test_id("submit").click()
        expect(page.get_by_test_id("case-pin")).to_be_visible()

        page.evaluate("window.print = () => { window.printed = true; }")
        page.get_by_role("button", name=text["print"]).click()
        assert page.evaluate("window.printed") is True

        page.emulate_media(media="print")
        expect(page.get_by_test_id("case-number")).to_be_visible()
        expect(page.get_by_test_id("case-pin")).to_be_visible()
        expect(page.get_by_role("banner")).to_be_hidden()
        expect(page.get_by_role("contentinfo")).to_be_hidden()
        expect(page.get_by_role("button", name=text["print"])).to_be_hidden()
        assert_page_is_clean(page)
