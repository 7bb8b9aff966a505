"""Celery tasks of the project as a whole."""

from celery import shared_task

from tidportal import health


@shared_task(ignore_result=True)
def worker_heartbeat() -> None:
    """Scheduled by beat; its run proves beat, the broker and a worker all work
    (/healthz/worker)."""
    health.heartbeat_record()
