"""Celery entry points for cases. Each is idempotent and calls one service."""

from celery import shared_task
from django.db import OperationalError

from cases import services
from cases.models import Case


@shared_task(
    name="cases.tasks.case_near_duplicates_refresh",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
    acks_late=True,
)
def case_near_duplicates_refresh(*, case_id: int) -> int:
    """Find near-duplicates of a case's files after they arrive (queued on commit)."""
    case = Case.objects.filter(pk=case_id).first()
    if case is None:  # rolled back or never committed: nothing to do
        return 0
    return services.case_near_duplicates_refresh(case=case)
