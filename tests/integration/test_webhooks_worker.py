"""Webhooks through a real worker process: one partner's hanging endpoint does not hold up
another's delivery, and the due run delivers what was committed while no task reached Redis.

The partners' endpoints are real HTTP servers on 127.0.0.1 in this process.
"""

import time

import pytest
from django.db import transaction
from django.utils import timezone

from hashlists.models import HashEntry, HashList
from hashlists.services import list_change_record
from partners import webhooks
from partners.models import Partner, WebhookDelivery
from partners.services import partner_create
from tests.integration.conftest import wait_for
from tests.partners.webhook_receiver import HANG, running_receiver, verify_signature
from tidportal.celery import app

Status = WebhookDelivery.Status


def subscriber(name: str, hash_list: HashList, url: str, secret: str) -> Partner:
    partner = partner_create(name=name, readable_lists=[hash_list])
    Partner.objects.filter(pk=partner.pk).update(webhook_url=url, webhook_secret=secret)
    return partner


@pytest.mark.parametrize(
    "celery_worker", [("--pool=threads", "--concurrency=4")], indirect=True, ids=["threads"]
)
def test_a_hanging_endpoint_does_not_delay_another_partners_delivery(celery_worker, default_list):
    with running_receiver() as hanging, running_receiver() as healthy:
        hanging.answer(then=HANG)
        # The healthy endpoint answers only once the other one holds a request open, so the test
        # proves the two attempts overlap whichever task a worker thread takes first.
        healthy.answer_after = hanging.hang_started
        slow_partner = subscriber("Slow Platform", default_list, hanging.url, "slow-secret")
        quick_partner = subscriber("Quick Platform", default_list, healthy.url, "quick-secret")

        with transaction.atomic():
            entry = HashEntry.objects.create(
                hash_list=default_list, hash_type="md5", value="d" * 32, media_type="image"
            )
            list_change_record(entry=entry, op="add")
        # The worker sequences the change, then queues one delivery task per partner.

        quick = wait_for(
            lambda: WebhookDelivery.objects.filter(
                partner=quick_partner, status=Status.DELIVERED
            ).first(),
            timeout=30,
        )
        delivered = time.monotonic()
        slow = WebhookDelivery.objects.get(partner=slow_partner)
        # The slow partner's attempt is still under way: its request is open and unanswered,
        # and its outcome not yet recorded.
        assert hanging.hanging == 1
        assert slow.status == Status.PENDING and slow.attempts == 1 and slow.last_error == ""
        assert delivered - hanging.requests[0].received_at < webhooks.TIMEOUT_SECONDS
        assert quick.attempts == 1 and quick.seq == slow.seq == 1
        (request,) = healthy.requests
        assert verify_signature(secret="quick-secret", headers=request.headers, body=request.body)

        # The hanging attempt times out on its own and is scheduled for a retry.
        slow = wait_for(
            lambda: WebhookDelivery.objects.filter(
                partner=slow_partner, status=Status.FAILED
            ).first(),
            timeout=30,
        )
        assert slow.last_error == "timed out after 5 s" and slow.last_status_code is None
        assert slow.next_attempt_at > timezone.now()
        assert WebhookDelivery.objects.get(pk=quick.pk).status == Status.DELIVERED


def test_the_due_run_delivers_what_was_committed_while_no_task_reached_the_broker(
    celery_worker, default_list
):
    with running_receiver() as endpoint:
        partner = subscriber("Receiving Platform", default_list, endpoint.url, "the-secret")
        # As if Redis had been down when the sequencer committed: the delivery row is there,
        # no task was sent.
        delivery = WebhookDelivery.objects.create(
            partner=partner, hash_list=default_list, seq=7, next_attempt_at=timezone.now()
        )

        app.send_task("partners.tasks.webhook_deliveries_due")  # what beat sends on its schedule

        delivered = wait_for(
            lambda: WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.DELIVERED).first()
        )
        assert delivered.attempts == 1 and delivered.delivered_at is not None
        (request,) = endpoint.requests
        assert request.body == b'{"list":"take-it-down","seq":7}'
        assert verify_signature(secret="the-secret", headers=request.headers, body=request.body)
