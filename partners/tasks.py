"""Celery entry points for partners. Each is idempotent and calls one service."""

from celery import shared_task
from django.db import OperationalError

from partners import webhooks


@shared_task(
    name="partners.tasks.webhook_deliver",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
    acks_late=True,
)
def webhook_deliver(delivery_id: int) -> str | None:
    """One attempt at one webhook delivery. A retry after a failed attempt is not scheduled here:
    the attempt sets ``next_attempt_at`` and ``webhook_deliveries_due`` queues it when due.
    Returns the delivery's status after the attempt, None when there was nothing to do."""
    delivery = webhooks.webhook_delivery_attempt(delivery_id=delivery_id)
    return delivery.status if delivery else None


@shared_task(
    name="partners.tasks.webhook_deliveries_due",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
    acks_late=True,
)
def webhook_deliveries_due() -> int:
    """Queue an attempt for every webhook delivery that is due. Run by beat, so deliveries whose
    task was never sent or was lost (Redis or a worker down) are still made."""
    return webhooks.webhook_deliveries_due_queue()
