"""The change feed's outbox sequencer (DESIGN.md section 4)."""

import threading

import pytest
from django.db import connection, transaction

from hashlists.models import HashEntry, HashList, ListChange
from hashlists.services import list_change_record, list_changes_sequence


def make_entry(hash_list, n):
    return HashEntry.objects.create(
        hash_list=hash_list, hash_type="pdq", value=f"{n:064x}", media_type="image", quality=90
    )


def test_sequencer_numbers_each_list_from_one_without_gaps(default_list):
    other = HashList.objects.create(slug="other", name="Other")
    for n in range(5):
        ListChange.objects.create(
            hash_list=default_list, entry=make_entry(default_list, n), op="add"
        )
        ListChange.objects.create(hash_list=other, entry=make_entry(other, n), op="add")
    assert list_changes_sequence() == 10
    for hash_list in (default_list, other):
        changes = list(hash_list.changes.order_by("seq"))
        assert [c.seq for c in changes] == [1, 2, 3, 4, 5]
        assert [c.id for c in changes] == sorted(c.id for c in changes)
        times = [c.sequenced_at for c in changes]
        assert times == sorted(times) and None not in times
    assert list_changes_sequence() == 0  # idempotent


def test_recording_a_change_sequences_it_once_the_transaction_commits(
    default_list, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        change = list_change_record(entry=make_entry(default_list, 1), op="add")
        assert ListChange.objects.get(pk=change.pk).seq is None
    assert len(callbacks) == 1
    change.refresh_from_db()
    assert change.seq == 1


@pytest.mark.django_db(transaction=True)
def test_an_uncommitted_change_is_not_sequenced_until_it_commits(default_list):
    first = make_entry(default_list, 1)
    written, release, done = threading.Event(), threading.Event(), threading.Event()

    def slow_writer():
        try:
            with transaction.atomic():
                ListChange.objects.create(hash_list=default_list, entry=first, op="add")
                written.set()
                release.wait(10)
        finally:
            connection.close()
            done.set()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert written.wait(10)
    # A later writer commits first: it is sequenced now; the open one is invisible and waits.
    ListChange.objects.create(hash_list=default_list, entry=make_entry(default_list, 2), op="add")
    assert list_changes_sequence() == 1
    release.set()
    assert done.wait(10)
    thread.join()
    assert list_changes_sequence() == 1
    seqs = list(default_list.changes.order_by("seq").values_list("entry__value", "seq"))
    assert seqs == [(f"{2:064x}", 1), (f"{1:064x}", 2)]


@pytest.mark.django_db(transaction=True)
def test_concurrent_sequencers_never_hand_out_a_number_twice(default_list):
    entries = [make_entry(default_list, n) for n in range(200)]
    errors = []

    def writer(chunk):
        try:
            for e in chunk:
                with transaction.atomic():
                    ListChange.objects.create(hash_list=default_list, entry=e, op="add")
                list_changes_sequence()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(entries[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    list_changes_sequence()
    seqs = list(default_list.changes.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 201))
