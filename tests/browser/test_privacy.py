"""Privacy, end to end: after a reporter sends a report and checks it in Chromium, nothing that
identifies them (their address, their browser's user agent) and no byte of their files is in the
database, the logs or the messages queued for Celery."""

import logging
import secrets

import pytest
import redis
from django.apps import apps
from django.db import connection
from playwright.sync_api import expect

from cases.models import Case
from tests.browser.reporting import (
    choose_files,
    reset_throttles,
    wait_for_hashes,
    write_media,
)
from tests.browser.test_report_flow import TEXT as REPORT_TEXT
from tests.browser.test_report_flow import answer_eligibility
from tests.browser.test_status import TEXT as STATUS_TEXT
from tests.browser.test_status import look_up
from tidportal.celery import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)

ADDRESS = "203.0.113.77"  # TEST-NET-3: an address the reporter's proxy reports for them


class Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.args!r} {getattr(record, 'extra', '')}")


@pytest.fixture
def every_log_line():
    """Every record of every logger, at every level, whether it propagates or not."""
    handler = Everything()
    loggers = [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield handler.lines
    for lg, level in saved:
        lg.removeHandler(handler)
        lg.setLevel(level)


@pytest.fixture
def queued_messages(settings):
    """Tasks go to the real broker and stay there (no worker runs): their raw messages."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    settings.CELERY_TASK_ALWAYS_EAGER = False

    def read() -> list[bytes]:
        lists = [key for key in broker.scan_iter() if broker.type(key) == b"list"]
        return [message for key in lists for message in broker.lrange(key, 0, -1)]

    yield read
    celery_app.conf.task_always_eager = eager
    broker.flushdb()


def database_text() -> str:
    """Every row of every table of the project's apps, as text."""
    chunks = []
    with connection.cursor() as cursor:
        for model in apps.get_models():
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - table names from the models
            chunks += [repr(row) for row in cursor.fetchall()]
    return "\n".join(chunks)


def test_nothing_identifying_the_reporter_is_kept_anywhere(
    browser, live_server, settings, tmp_path, default_list, every_log_line, queued_messages
):
    settings.TID_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    reset_throttles()
    agent = f"Mozilla/5.0 (Linux; Android 14) PrivacyProbe/{secrets.token_hex(6)}"
    media = write_media(tmp_path)
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        locale="en-US",
        user_agent=agent,
        extra_http_headers={"X-Forwarded-For": ADDRESS},
    )
    page = context.new_page()
    try:
        page.goto(live_server.url + "/report/")
        answer_eligibility(page, REPORT_TEXT["en-US"])
        choose_files(page, [*media.photos, media.video])
        wait_for_hashes(page, 3)
        page.get_by_role("button", name=REPORT_TEXT["en-US"]["continue"]).click()
        page.get_by_test_id("submit").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(REPORT_TEXT["en-US"]["receipt"])
        case_number = page.get_by_test_id("case-number").inner_text()
        pin = page.get_by_test_id("case-pin").inner_text()

        page.goto(live_server.url + "/status/")
        look_up(page, case_number, pin, STATUS_TEXT["en-US"])
        expect(page.get_by_text(STATUS_TEXT["en-US"]["received"]).first).to_be_visible()
    finally:
        context.close()

    case = Case.objects.get(case_number=case_number)
    assert case.items.count() == 3
    messages = queued_messages()
    assert messages, "the report queued no task at all?"  # the near-duplicate refresh
    stores = {
        "database": database_text(),
        "logs": "\n".join(every_log_line),
        "Celery messages": "\n".join(m.decode(errors="replace") for m in messages),
    }
    assert any(case_number in text for text in (stores["logs"], stores["database"]))
    probes = {
        "address": ADDRESS,
        "user agent": agent.rsplit("/", 1)[1],
    }
    for path in [*media.photos, media.video]:
        data = path.read_bytes()
        probes[path.name] = data[len(data) // 2 : len(data) // 2 + 32].hex()
    for where, text in stores.items():
        for what, probe in probes.items():
            assert probe not in text, f"the reporter's {what} is in the {where}"
    # The PIN is stored only as a salted hash (eight digits could turn up by chance among the
    # database's numbers, so it is looked for where no number of its kind belongs).
    assert pin not in stores["logs"] and pin not in stores["Celery messages"]
    assert pin not in case.pin_hash
    assert "127.0.0.1" not in stores["database"]
    assert settings.SECRET_KEY not in stores["logs"]
