"""Queued work reaches a real worker process through Redis and is done there."""

import pytest
from django.db import transaction

from hashlists.models import HashEntry, ListChange
from hashlists.services import list_change_record
from tests.integration.conftest import wait_for


def test_a_committed_change_is_sequenced_by_the_worker_within_seconds(celery_worker, default_list):
    with transaction.atomic():
        entry = HashEntry.objects.create(
            hash_list=default_list, hash_type="md5", value="a" * 32, media_type="image"
        )
        change = list_change_record(entry=entry, op="add")
    # Nothing ran in this process: the worker picks the task from Redis and writes the seq.
    seq = wait_for(lambda: ListChange.objects.get(pk=change.pk).seq)
    assert seq == 1


def test_changes_written_while_no_task_was_queued_are_sequenced_by_the_scheduled_run(
    celery_worker, default_list
):
    # As if Redis had been down when the writer committed: the row is there, no task was sent.
    entry = HashEntry.objects.create(
        hash_list=default_list, hash_type="md5", value="b" * 32, media_type="image"
    )
    change = ListChange.objects.create(hash_list=default_list, entry=entry, op="add")
    from tidportal.celery import app

    app.send_task("hashlists.tasks.list_changes_sequence")  # what beat sends on its schedule
    assert wait_for(lambda: ListChange.objects.get(pk=change.pk).seq) == 1


@pytest.mark.parametrize("celery_worker", [("--pool=solo", "--queues=feed")], indirect=True)
def test_the_sequencer_has_a_queue_of_its_own(celery_worker, default_list):
    """A worker that consumes only the `feed` queue sequences changes, and other work (here
    the heartbeat) waits on the default queue for the other workers."""
    from tidportal import health
    from tidportal.tasks import worker_heartbeat

    worker_heartbeat.delay()
    with transaction.atomic():
        entry = HashEntry.objects.create(
            hash_list=default_list, hash_type="md5", value="c" * 32, media_type="image"
        )
        change = list_change_record(entry=entry, op="add")
    assert wait_for(lambda: ListChange.objects.get(pk=change.pk).seq) == 1
    assert health.heartbeat_age() is None
