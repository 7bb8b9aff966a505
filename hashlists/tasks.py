"""Celery entry points for hash lists. Each is idempotent and calls one service."""

from celery import shared_task
from django.db import OperationalError

from hashlists import services, snapshots
from hashlists.models import HashList


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


@shared_task(
    name="hashlists.tasks.hash_list_snapshot_build",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
    acks_late=True,
)
def hash_list_snapshot_build(*, hash_list_id: int) -> int:
    """Build the list's snapshot at its latest seq (a no-op if it exists). Returns the seq."""
    hash_list = HashList.objects.get(pk=hash_list_id)
    return snapshots.hash_list_snapshot_build(hash_list=hash_list).seq


@shared_task(name="hashlists.tasks.hash_list_snapshots_due", acks_late=True)
def hash_list_snapshots_due() -> list[int]:
    """Run by beat: queue a snapshot build for every published list that is due one."""
    due = [
        hash_list.pk
        for hash_list in HashList.objects.filter(published=True)
        if snapshots.hash_list_snapshot_due(hash_list=hash_list)
    ]
    for hash_list_id in due:
        hash_list_snapshot_build.delay(hash_list_id=hash_list_id)
    return due
