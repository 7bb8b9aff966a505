"""Tasks queued after commit are queued once per transaction, and never lost to a savepoint
that rolled back."""

from contextlib import suppress

from django.db import transaction

from cases import services as case_services
from hashlists import tasks as hashlist_tasks
from hashlists.models import HashEntry
from hashlists.services import list_change_record
from tests.helpers import numbered_image
from tidportal.queueing import queue_after_commit


def queued(callbacks: list) -> list[str]:
    """The task names that ``callbacks`` (collected on commit) publish."""
    return sorted(callback.queued_key[0] for callback in callbacks)


def entry(default_list, n: int) -> HashEntry:
    return HashEntry.objects.create(
        hash_list=default_list, hash_type="md5", value=f"{n:032x}", media_type="image"
    )


def change_in_failed_savepoint(default_list, n: int) -> None:
    """Record a change in a savepoint that then fails (rolled back, the caller goes on)."""
    with transaction.atomic():  # a savepoint
        list_change_record(entry=entry(default_list, n), op="add")
        raise RuntimeError("the inner step fails")


def test_accepting_a_case_queues_the_sequencer_once_for_all_its_hashes(
    default_list, reviewer, django_capture_on_commit_callbacks
):
    case, _ = case_services.case_create(
        reporter="self", under_18_when_made=True, items=[numbered_image(1)]
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        case_services.case_accept(case=case, staff=reviewer)
    assert default_list.changes.count() == 3  # md5, PDQ and pHash
    assert queued(callbacks) == ["hashlists.tasks.list_changes_sequence"]
    assert default_list.changes.filter(seq__isnull=True).count() == 0  # and it ran


def test_the_same_task_with_other_arguments_is_queued_again(
    default_list, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        queue_after_commit(hashlist_tasks.hash_list_snapshot_build, hash_list_id=1)
        queue_after_commit(hashlist_tasks.hash_list_snapshot_build, hash_list_id=2)
        queue_after_commit(hashlist_tasks.hash_list_snapshot_build, hash_list_id=1)
    assert [c.queued_key for c in callbacks] == [
        ("hashlists.tasks.hash_list_snapshot_build", (("hash_list_id", 1),)),
        ("hashlists.tasks.hash_list_snapshot_build", (("hash_list_id", 2),)),
    ]


def test_a_queue_in_a_rolled_back_savepoint_does_not_swallow_a_later_one(
    default_list, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        with suppress(RuntimeError):
            change_in_failed_savepoint(default_list, 1)
        list_change_record(entry=entry(default_list, 2), op="add")
    assert queued(callbacks) == ["hashlists.tasks.list_changes_sequence"]
    assert list(default_list.changes.values_list("seq", flat=True)) == [1]


def test_a_queue_inside_a_savepoint_stays_when_an_outer_one_exists(
    default_list, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        list_change_record(entry=entry(default_list, 1), op="add")
        with suppress(RuntimeError):
            change_in_failed_savepoint(default_list, 2)
    # The outer change's queue survives the inner rollback, and it alone is sequenced.
    assert queued(callbacks) == ["hashlists.tasks.list_changes_sequence"]
    assert list(default_list.changes.values_list("seq", flat=True)) == [1]
