"""Celery entry points for hash lists. Each is idempotent and calls one service."""

from celery import shared_task
from django.db import OperationalError

from hashlists import services


@shared_task(
    name="hashlists.tasks.list_changes_sequence",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
    acks_late=True,
)
def list_changes_sequence() -> int:
    """Sequence pending feed changes. Queued after every commit that writes one, and run by beat
    so that changes written while the broker was down are sequenced all the same."""
    return services.list_changes_sequence()
