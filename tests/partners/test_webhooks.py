"""Webhooks: signed "list changed" notifications, retries, supersession, the due run.

Every request goes to a real HTTP server on 127.0.0.1 (tests/partners/webhook_receiver.py).
Celery runs tasks eagerly here; tests/integration/test_webhooks_worker.py uses a real worker.
"""

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from hashlists.models import HashEntry, HashList, ListChange
from hashlists.services import list_changes_sequence
from partners import tasks, webhooks
from partners.models import Partner, WebhookDelivery
from partners.services import partner_create
from tests.helpers import free_port
from tests.partners.webhook_receiver import HANG, Receiver, running_receiver, verify_signature

Status = WebhookDelivery.Status
SECRET = "whsec-" + "k" * 40


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def subscriber(
    name: str, hash_list: HashList, url: str, *, secret: str = SECRET, **fields: object
) -> Partner:
    partner = partner_create(name=name, readable_lists=[hash_list])
    Partner.objects.filter(pk=partner.pk).update(webhook_url=url, webhook_secret=secret, **fields)
    partner.refresh_from_db()
    return partner


def sequence_changes(
    capture: Callable[..., AbstractContextManager[object]],
    hash_list: HashList,
    *,
    count: int = 1,
    broker_up: bool = True,
) -> None:
    """Write ``count`` changes and run the sequencer; with the broker down, the webhook tasks
    it queues on commit are never sent (their callbacks are dropped)."""
    for _ in range(count):
        entry = HashEntry.objects.create(
            hash_list=hash_list, hash_type="md5", value=secrets.token_hex(16), media_type="image"
        )
        ListChange.objects.create(hash_list=hash_list, entry=entry, op="add")
    with capture(execute=broker_up):
        list_changes_sequence()


def make_due(delivery: WebhookDelivery) -> None:
    """As if the backoff had elapsed."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def deliver_again(delivery: WebhookDelivery) -> WebhookDelivery:
    make_due(delivery)
    tasks.webhook_deliver.delay(delivery.pk)
    return WebhookDelivery.objects.get(pk=delivery.pk)


# ------------------------------------------------------------------------------------------------
# The request
# ------------------------------------------------------------------------------------------------


def test_a_sequenced_change_is_posted_to_the_partner_signed_and_logged_as_delivered(
    default_list, receiver, django_capture_on_commit_callbacks
):
    partner = subscriber("Receiving Platform", default_list, receiver.url)

    sequence_changes(django_capture_on_commit_callbacks, default_list, count=3)

    assert len(receiver.requests) == 1  # one notification for the batch, with its newest seq
    request = receiver.requests[0]
    assert request.method == "POST" and request.path == "/hooks/tid?token=abc"
    assert request.body == b'{"list":"take-it-down","seq":3}'
    assert json.loads(request.body) == {"list": "take-it-down", "seq": 3}
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "tidportal-webhooks/1"
    assert abs(int(request.headers["X-Tid-Timestamp"]) - time.time()) < 60
    assert request.headers["X-Tid-Signature"].startswith("v1=")
    assert verify_signature(secret=SECRET, headers=request.headers, body=request.body)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.partner, delivery.hash_list, delivery.seq) == (partner, default_list, 3)
    assert delivery.status == Status.DELIVERED and delivery.attempts == 1
    assert delivery.last_status_code == 200 and delivery.last_error == ""
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None


def test_a_tampered_body_a_wrong_secret_or_a_replayed_old_timestamp_fail_verification(
    default_list, receiver, django_capture_on_commit_callbacks
):
    subscriber("Receiving Platform", default_list, receiver.url)
    sequence_changes(django_capture_on_commit_callbacks, default_list)
    request = receiver.requests[0]
    headers, body = request.headers, request.body

    assert verify_signature(secret=SECRET, headers=headers, body=body)
    assert not verify_signature(secret=SECRET, headers=headers, body=body.replace(b"1", b"9"))
    assert not verify_signature(secret=SECRET + "x", headers=headers, body=body)
    # The timestamp is signed too: moving it (to replay an old notification as new) breaks it.
    moved = {**headers, "X-Tid-Timestamp": str(int(headers["X-Tid-Timestamp"]) + 1)}
    assert not verify_signature(secret=SECRET, headers=moved, body=body)
    assert not verify_signature(secret=SECRET, headers=headers, body=body, tolerance_seconds=-1)


def test_each_partner_gets_its_own_delivery_signed_with_its_own_secret(
    default_list, django_capture_on_commit_callbacks
):
    with running_receiver() as first, running_receiver() as second:
        subscriber("First Platform", default_list, first.url, secret="first-secret")
        subscriber("Second Platform", default_list, second.url, secret="second-secret")

        sequence_changes(django_capture_on_commit_callbacks, default_list)

    (a,), (b,) = first.requests, second.requests
    assert verify_signature(secret="first-secret", headers=a.headers, body=a.body)
    assert verify_signature(secret="second-secret", headers=b.headers, body=b.body)
    assert not verify_signature(secret="second-secret", headers=a.headers, body=a.body)
    assert WebhookDelivery.objects.filter(status=Status.DELIVERED).count() == 2


# ------------------------------------------------------------------------------------------------
# Who is notified
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda p, other: p.readable_lists.set([other]), id="reads-another-list"),
        pytest.param(
            lambda p, other: Partner.objects.filter(pk=p.pk).update(status="suspended"),
            id="suspended",
        ),
        pytest.param(
            lambda p, other: Partner.objects.filter(pk=p.pk).update(webhook_url=""),
            id="no-webhook-url",
        ),
        pytest.param(
            lambda p, other: HashList.objects.filter(pk=p.readable_lists.get().pk).update(
                published=False
            ),
            id="list-unpublished",
        ),
    ],
)
def test_no_delivery_for_partners_that_do_not_follow_the_list(
    change, default_list, receiver, django_capture_on_commit_callbacks
):
    other = HashList.objects.create(slug="other-list", name="Other", published=True)
    partner = subscriber("Receiving Platform", default_list, receiver.url)
    change(partner, other)

    sequence_changes(django_capture_on_commit_callbacks, default_list)

    assert not WebhookDelivery.objects.exists()
    assert receiver.requests == []


def test_a_partner_suspended_after_queueing_is_not_posted_to(
    default_list, receiver, django_capture_on_commit_callbacks
):
    partner = subscriber("Receiving Platform", default_list, receiver.url)
    sequence_changes(django_capture_on_commit_callbacks, default_list, broker_up=False)
    Partner.objects.filter(pk=partner.pk).update(status=Partner.Status.SUSPENDED)

    tasks.webhook_deliveries_due.delay()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.GAVE_UP and delivery.last_error == "partner suspended"
    assert delivery.attempts == 0 and receiver.requests == []


def test_queueing_the_same_seq_twice_makes_one_delivery(
    default_list, receiver, django_capture_on_commit_callbacks
):
    subscriber("Receiving Platform", default_list, receiver.url)
    sequence_changes(django_capture_on_commit_callbacks, default_list)

    with django_capture_on_commit_callbacks(execute=True):
        again = webhooks.webhook_deliveries_queue(hash_list_id=default_list.pk, seq=1)

    assert [d.status for d in again] == [Status.DELIVERED]
    assert WebhookDelivery.objects.count() == 1 and len(receiver.requests) == 1


# ------------------------------------------------------------------------------------------------
# Failures and retries
# ------------------------------------------------------------------------------------------------


def test_a_receiver_that_fails_twice_then_succeeds_is_delivered_exactly_once(
    default_list, receiver, django_capture_on_commit_callbacks
):
    receiver.answer(500, 503, then=204)
    subscriber("Receiving Platform", default_list, receiver.url)
    sequence_changes(django_capture_on_commit_callbacks, default_list)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        Status.FAILED,
        1,
        500,
    )
    assert delivery.next_attempt_at > timezone.now() and delivery.delivered_at is None

    # Not due yet: running the task again does nothing.
    tasks.webhook_deliver.delay(delivery.pk)
    assert len(receiver.requests) == 1

    delivery = deliver_again(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        Status.FAILED,
        2,
        503,
    )
    delivery = deliver_again(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        Status.DELIVERED,
        3,
        204,
    )
    assert delivery.last_error == "" and delivery.delivered_at is not None
    delivered_at = delivery.delivered_at

    # Delivered is final: neither the task nor the due run posts it again.
    deliver_again(delivery)
    tasks.webhook_deliveries_due.delay()
    delivery.refresh_from_db()
    assert len(receiver.requests) == 3
    assert delivery.attempts == 3 and delivery.delivered_at == delivered_at
    assert WebhookDelivery.objects.filter(status=Status.DELIVERED).count() == 1
    bodies = {r.body for r in receiver.requests}
    assert bodies == {b'{"list":"take-it-down","seq":1}'}


def test_retries_back_off_exponentially_with_jitter(
    default_list, receiver, django_capture_on_commit_callbacks
):
    receiver.answer(then=500)
    subscriber("Receiving Platform", default_list, receiver.url)
    sequence_changes(django_capture_on_commit_callbacks, default_list)
    delivery = WebhookDelivery.objects.get()

    delays = []
    for _ in range(6):
        delays.append((delivery.next_attempt_at - delivery.updated_at).total_seconds())
        delivery = deliver_again(delivery)

    for attempt, delay in enumerate(delays, start=1):
        expected = 30 * 2 ** (attempt - 1)  # 30 s, 1, 2, 4, 8, 16 minutes, less jitter
        assert expected * 0.8 - 1 <= delay <= expected, (attempt, delay)
    assert delays == sorted(delays)
    assert delivery.status == Status.FAILED and delivery.attempts == 7
    assert len(receiver.requests) == 7


def test_the_retry_delay_is_capped_at_an_hour_and_jittered():
    late = [webhooks.webhook_retry_delay(attempts=n).total_seconds() for n in range(8, 60)]
    assert all(3600 * 0.8 <= d <= 3600 for d in late)
    assert len(set(late)) > 1  # jittered, not in lockstep
    assert 24 <= webhooks.webhook_retry_delay(attempts=1).total_seconds() <= 30


def test_a_delivery_gives_up_after_about_a_day(
    default_list, receiver, django_capture_on_commit_callbacks
):
    receiver.answer(then=500)
    subscriber("Receiving Platform", default_list, receiver.url)
    sequence_changes(django_capture_on_commit_callbacks, default_list, broker_up=False)
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        created_at=timezone.now() - timedelta(hours=23, minutes=59, seconds=45)
    )

    # Its next retry (24-30 s on) would fall past a day since it was queued: it gives up now.
    delivery = deliver_again(delivery)

    assert delivery.status == Status.GAVE_UP and delivery.next_attempt_at is None
    assert delivery.attempts == 1 and delivery.last_error == "HTTP 500"
    tasks.webhook_deliveries_due.delay()
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    ("answer", "status_code", "error"),
    [
        pytest.param(500, 500, "HTTP 500", id="500"),
        pytest.param(404, 404, "HTTP 404", id="404"),
        pytest.param(302, 302, "HTTP 302: redirect", id="redirect-not-followed"),
        pytest.param(HANG, None, "timed out after 0.5 s", id="timeout"),
    ],
)
def test_failed_attempts_are_logged_with_a_short_readable_error_and_no_secret(
    answer,
    status_code,
    error,
    default_list,
    receiver,
    django_capture_on_commit_callbacks,
    monkeypatch,
    caplog,
):
    monkeypatch.setattr(webhooks, "TIMEOUT_SECONDS", 0.5)  # the 5 s real timeout, shortened
    receiver.answer(answer, then=200)
    subscriber("Receiving Platform", default_list, receiver.url)

    with caplog.at_level(logging.INFO, logger="partners.webhooks"):
        sequence_changes(django_capture_on_commit_callbacks, default_list)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.FAILED and delivery.attempts == 1
    assert (delivery.last_status_code, delivery.last_error) == (status_code, error)
    assert delivery.next_attempt_at > timezone.now()
    assert [r.method for r in receiver.requests] == ["POST"]  # a redirect is not followed
    failed = [r for r in caplog.records if r.getMessage() == "webhook attempt failed"]
    assert len(failed) == 1 and failed[0].delivery_id == delivery.pk and failed[0].error == error
    for record in caplog.records:
        assert SECRET not in str(record.__dict__)
        assert "token=abc" not in str(record.__dict__)  # nor the URL, which may carry a token

    delivery = deliver_again(delivery)
    assert delivery.status == Status.DELIVERED and delivery.last_error == ""


def test_a_refused_connection_is_retried(default_list, django_capture_on_commit_callbacks):
    subscriber("Receiving Platform", default_list, f"http://127.0.0.1:{free_port()}/hook")

    sequence_changes(django_capture_on_commit_callbacks, default_list)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.FAILED and delivery.last_error == "connection refused"
    assert delivery.last_status_code is None and delivery.next_attempt_at > timezone.now()


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1:21/hook", "file:///etc/passwd", "gopher://127.0.0.1/x"]
)
def test_only_http_and_https_urls_are_posted_to(
    url, default_list, receiver, django_capture_on_commit_callbacks
):
    subscriber("Receiving Platform", default_list, url)

    sequence_changes(django_capture_on_commit_callbacks, default_list)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.FAILED
    assert delivery.last_error == "refused: the webhook URL must be http:// or https://"
    assert delivery.last_status_code is None


def test_a_partner_without_a_secret_is_not_posted_to_until_it_has_one(
    default_list, receiver, django_capture_on_commit_callbacks
):
    partner = subscriber("Receiving Platform", default_list, receiver.url, secret="")

    sequence_changes(django_capture_on_commit_callbacks, default_list)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.FAILED and delivery.last_error == "no webhook secret set"
    assert receiver.requests == []

    Partner.objects.filter(pk=partner.pk).update(webhook_secret=SECRET)
    delivery = deliver_again(delivery)
    assert delivery.status == Status.DELIVERED and delivery.attempts == 2
    assert verify_signature(
        secret=SECRET, headers=receiver.requests[0].headers, body=receiver.requests[0].body
    )


@pytest.mark.parametrize("status", [Status.DELIVERED, Status.SUPERSEDED, Status.GAVE_UP])
def test_delivering_a_finished_delivery_does_nothing(status, default_list, receiver):
    partner = subscriber("Receiving Platform", default_list, receiver.url)
    delivery = WebhookDelivery.objects.create(
        partner=partner, hash_list=default_list, seq=1, status=status, attempts=2
    )

    assert tasks.webhook_deliver.delay(delivery.pk).get() is None

    assert receiver.requests == []
    assert WebhookDelivery.objects.get(pk=delivery.pk).attempts == 2


def test_an_attempt_in_progress_is_not_started_again(default_list, receiver):
    partner = subscriber("Receiving Platform", default_list, receiver.url)
    delivery = WebhookDelivery.objects.create(
        partner=partner,
        hash_list=default_list,
        seq=1,
        attempts=1,
        next_attempt_at=timezone.now() + webhooks.ATTEMPT_LEASE,  # leased by a running attempt
    )

    tasks.webhook_deliver.delay(delivery.pk)
    tasks.webhook_deliveries_due.delay()

    assert receiver.requests == []
    assert WebhookDelivery.objects.get(pk=delivery.pk).attempts == 1


# ------------------------------------------------------------------------------------------------
# Supersession
# ------------------------------------------------------------------------------------------------


def test_a_newer_seq_supersedes_an_older_failing_delivery(
    default_list, receiver, django_capture_on_commit_callbacks
):
    receiver.answer(500, then=200)
    subscriber("Receiving Platform", default_list, receiver.url)
    sequence_changes(django_capture_on_commit_callbacks, default_list)
    older = WebhookDelivery.objects.get()
    assert older.status == Status.FAILED

    sequence_changes(django_capture_on_commit_callbacks, default_list)

    older.refresh_from_db()
    newer = WebhookDelivery.objects.get(seq=2)
    assert older.status == Status.SUPERSEDED and older.next_attempt_at is None
    assert older.last_status_code == 500  # its own history stays readable
    assert newer.status == Status.DELIVERED
    assert [json.loads(r.body)["seq"] for r in receiver.requests] == [1, 2]
    # The due run leaves the superseded one alone.
    make_due(older)
    tasks.webhook_deliveries_due.delay()
    assert len(receiver.requests) == 2


def test_pending_deliveries_are_superseded_and_only_the_newest_is_sent(
    default_list, receiver, django_capture_on_commit_callbacks
):
    subscriber("Receiving Platform", default_list, receiver.url)
    for _ in range(3):
        sequence_changes(django_capture_on_commit_callbacks, default_list, broker_up=False)

    tasks.webhook_deliveries_due.delay()

    statuses = dict(WebhookDelivery.objects.values_list("seq", "status"))
    assert statuses == {1: Status.SUPERSEDED, 2: Status.SUPERSEDED, 3: Status.DELIVERED}
    assert [r.body for r in receiver.requests] == [b'{"list":"take-it-down","seq":3}']


def test_a_superseded_deliverys_task_sends_the_newest_while_the_list_keeps_changing(
    default_list, receiver, django_capture_on_commit_callbacks
):
    """Each delivery is superseded before its own task runs (the list changes faster than the
    queue moves): the first task to run sends the newest seq, and the later ones have nothing
    left to do."""
    subscriber("Receiving Platform", default_list, receiver.url)
    for _ in range(3):
        sequence_changes(django_capture_on_commit_callbacks, default_list, broker_up=False)
    first, second, newest = WebhookDelivery.objects.order_by("seq")

    assert tasks.webhook_deliver.delay(first.pk).get() == Status.DELIVERED

    statuses = dict(WebhookDelivery.objects.values_list("seq", "status"))
    assert statuses == {1: Status.SUPERSEDED, 2: Status.SUPERSEDED, 3: Status.DELIVERED}
    assert [r.body for r in receiver.requests] == [b'{"list":"take-it-down","seq":3}']
    for delivery in (second, newest):  # the tasks queued after it
        assert tasks.webhook_deliver.delay(delivery.pk).get() is None
    assert len(receiver.requests) == 1
    assert WebhookDelivery.objects.get(pk=newest.pk).attempts == 1


def test_supersession_is_per_partner_and_per_list(
    default_list, receiver, django_capture_on_commit_callbacks
):
    other = HashList.objects.create(slug="other-list", name="Other", published=True)
    first = subscriber("First Platform", default_list, receiver.url)
    first.readable_lists.add(other)
    subscriber("Second Platform", other, receiver.url)
    sequence_changes(django_capture_on_commit_callbacks, default_list, broker_up=False)
    sequence_changes(django_capture_on_commit_callbacks, other, broker_up=False)

    sequence_changes(django_capture_on_commit_callbacks, default_list, broker_up=False)

    rows = WebhookDelivery.objects.values_list("partner__name", "hash_list__slug", "seq", "status")
    assert sorted(rows) == [
        ("First Platform", "other-list", 1, Status.PENDING),
        ("First Platform", "take-it-down", 1, Status.SUPERSEDED),
        ("First Platform", "take-it-down", 2, Status.PENDING),
        ("Second Platform", "other-list", 1, Status.PENDING),
    ]


# ------------------------------------------------------------------------------------------------
# The due run (beat)
# ------------------------------------------------------------------------------------------------


def test_the_due_run_delivers_what_was_queued_while_the_broker_was_down(
    default_list, receiver, django_capture_on_commit_callbacks
):
    subscriber("Receiving Platform", default_list, receiver.url)
    sequence_changes(django_capture_on_commit_callbacks, default_list, broker_up=False)
    assert WebhookDelivery.objects.get().status == Status.PENDING and receiver.requests == []

    assert tasks.webhook_deliveries_due.delay().get() == 1

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.DELIVERED and delivery.attempts == 1
    assert receiver.requests[0].body == b'{"list":"take-it-down","seq":1}'


def test_the_due_run_retries_failed_deliveries_only_once_their_time_has_come(
    default_list, receiver, django_capture_on_commit_callbacks
):
    receiver.answer(500, then=200)
    subscriber("Receiving Platform", default_list, receiver.url)
    sequence_changes(django_capture_on_commit_callbacks, default_list)

    assert tasks.webhook_deliveries_due.delay().get() == 0
    assert len(receiver.requests) == 1

    make_due(WebhookDelivery.objects.get())
    assert tasks.webhook_deliveries_due.delay().get() == 1
    assert WebhookDelivery.objects.get().status == Status.DELIVERED
    assert len(receiver.requests) == 2


def test_beat_runs_the_due_deliveries_every_15_seconds_or_sooner():
    entry = settings.CELERY_BEAT_SCHEDULE["webhook-deliveries-due"]
    assert entry["task"] == "partners.tasks.webhook_deliveries_due"
    assert 0 < entry["schedule"] <= 15
