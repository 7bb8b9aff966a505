"""Distribution survives faults (DESIGN.md section 8): the database is the source of truth and
beat reconciles, so a Redis outage or a killed worker delays distribution but never loses it.

These tests really stop and start the components: a private redis-server on its own port, real
`celery worker` and `celery beat` processes, SIGKILL, and a file system that fills up.
"""

import base64
import gzip
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test import Client
from django.utils import timezone

from cases.models import Case
from hashlists import signing
from hashlists.models import HashEntry, HashList, ListChange, Snapshot
from hashlists.snapshots import hash_list_last_seq, hash_list_snapshot_build
from partners.models import WebhookDelivery
from partners.services import api_key_create, partner_create
from tests.conftest import SUPERVISOR_PERMISSIONS, staff_with
from tests.integration.conftest import wait_for
from tests.integration.stack import Stack, log
from tests.partners.webhook_receiver import running_receiver, verify_signature
from tidportal.metrics import render


@pytest.fixture
def stack(transactional_db, tmp_path):
    s = Stack(tmp_path)
    yield s
    s.stop_all()


ITEM = {
    "media_type": "image",
    "md5": "d" * 32,
    "pdq": "5a" * 32,
    "pdq_quality": 95,
    "phash": "0ff00ff00ff00ff0",
}


def test_a_case_accepted_while_redis_is_down_is_distributed_once_it_is_back(
    stack, default_list, django_user_model
):
    supervisor = staff_with(django_user_model, "sup", *SUPERVISOR_PERMISSIONS)
    with running_receiver() as receiver:
        partner_create(name="Hooked", readable_lists=[default_list])
        from partners.models import Partner

        Partner.objects.filter(name="Hooked").update(
            webhook_url=receiver.url, webhook_secret="s3cret-for-tests"
        )
        # Redis is down (nothing listens on its port): accepting must still succeed, at once.
        started = time.monotonic()
        result = stack.run_python(
            "from cases import services; from django.contrib.auth import get_user_model; "
            f"case, _ = services.case_create(reporter='self', under_18_when_made=True, "
            f"items=[{ITEM!r}]); "
            "services.case_accept(case=case, "
            f"staff=get_user_model().objects.get(pk={supervisor.pk})); "
            "print(case.case_number)"
        )
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert elapsed < 20, elapsed  # a second or two of publish retries, then on its way
        case = Case.objects.get(case_number=result.stdout.strip().splitlines()[-1])
        assert case.status == "accepted"
        assert ListChange.objects.filter(seq__isnull=True).count() == 3  # written, not numbered
        # Redis comes back; beat and a worker reconcile what is pending.
        stack.start_redis()
        stack.worker()
        stack.beat()
        wait_for(lambda: not ListChange.objects.filter(seq__isnull=True).exists(), timeout=60)
        assert sorted(ListChange.objects.values_list("seq", flat=True)) == [1, 2, 3]
        delivered = wait_for(
            lambda: WebhookDelivery.objects.filter(status="delivered").first(), timeout=60
        )
        assert delivered.seq == 3
        request = receiver.requests[-1]
        assert json.loads(request.body) == {"list": "take-it-down", "seq": 3}
        assert verify_signature(
            secret="s3cret-for-tests", headers=request.headers, body=request.body
        )


def seed_entries(hash_list: HashList, count: int) -> None:
    """Many active entries with their sequenced add changes, written in bulk after the list's
    existing ones."""
    now = timezone.now()
    first = hash_list_last_seq(hash_list=hash_list)
    entries = HashEntry.objects.bulk_create(
        [
            HashEntry(
                hash_list=hash_list,
                hash_type="md5",
                value=f"{n:032x}",
                media_type="image",
                backing_case_count=1,
            )
            for n in range(first, first + count)
        ],
        batch_size=10_000,
    )
    ListChange.objects.bulk_create(
        [
            ListChange(hash_list=hash_list, entry=e, op="add", seq=n, sequenced_at=now)
            for n, e in enumerate(entries, start=first + 1)
        ],
        batch_size=10_000,
    )


def streaming_snapshot() -> bool:
    """Another session of the test database is reading the snapshot's rows through a cursor."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query ILIKE %s",
            ["%_django_curs_%"],
        )
        return cursor.fetchone()[0] > 0


def test_a_worker_killed_while_building_a_snapshot_leaves_nothing_half_recorded(
    stack, default_list
):
    seed_entries(default_list, 150_000)
    stack.start_redis()
    worker = stack.worker()
    stack.run_python(
        "from hashlists import tasks; "
        f"tasks.hash_list_snapshot_build.delay(hash_list_id={default_list.pk})"
    )
    # Kill it while it streams entries into the file: once its server-side cursor is open.
    wait_for(streaming_snapshot, timeout=60, interval=0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert not Snapshot.objects.exists()  # nothing recorded from the killed build
    # Redis hands the unacknowledged task out again only after its visibility timeout (an
    # hour); meanwhile beat finds the list due a snapshot and queues a new build. The late
    # redelivery is then a no-op: the snapshot at that seq exists.
    stack.worker()
    stack.beat()
    snapshot = wait_for(lambda: Snapshot.objects.first(), timeout=120)
    assert (snapshot.seq, snapshot.entry_count) == (150_000, 150_000)
    data = default_storage.open(snapshot.file.name).read()
    assert hashlib.sha256(data).hexdigest() == snapshot.sha256
    assert len(gzip.decompress(data).splitlines()) == 150_000
    public = {k.key_id: k.raw for k in signing.public_keys()}[snapshot.key_id]
    assert signing.verify_snapshot(
        public_key=public,
        signature=bytes(snapshot.signature),
        list_slug="take-it-down",
        seq=snapshot.seq,
        count=snapshot.entry_count,
        sha256=snapshot.sha256,
    )
    assert base64.b64encode(bytes(snapshot.signature))


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB file system of its own (tmpfs) for the snapshot storage, which a test can fill."""
    folder = tmp_path / "storage"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def snapshot_files(storage: Path) -> set[str]:
    return {p.name for p in (storage / "snapshots" / "take-it-down").iterdir()}


def served_snapshot(api: Client) -> dict:
    """The newest snapshot as a partner gets it, checked as tidkit checks it: the file's
    SHA-256, the signature of the published key over (list, seq, count, SHA-256), the count."""
    meta = api.get("/api/v1/lists/take-it-down/snapshot").json()
    download = api.get("/api/v1/lists/take-it-down/snapshot/download", {"seq": meta["seq"]})
    assert download.status_code == 200
    data = b"".join(download.streaming_content)
    keys = {k["key_id"]: k for k in api.get("/api/v1/keys").json()["keys"]}
    assert hashlib.sha256(data).hexdigest() == meta["sha256"]
    assert signing.verify_snapshot(
        public_key=base64.b64decode(keys[meta["key_id"]]["public_key"]),
        signature=base64.b64decode(meta["signature"]),
        list_slug="take-it-down",
        seq=meta["seq"],
        count=meta["entry_count"],
        sha256=meta["sha256"],
    )
    assert len(gzip.decompress(data).splitlines()) == meta["entry_count"]
    return meta


def test_a_disk_full_while_storing_a_snapshot_keeps_the_previous_one_and_recovers(
    stack, default_list, partner, small_disk, settings
):
    settings.MEDIA_ROOT = small_disk
    stack.env.update(DJANGO_MEDIA_ROOT=str(small_disk), TID_SNAPSHOT_INTERVAL="0")
    api = Client()
    api.defaults["HTTP_AUTHORIZATION"] = (
        "Bearer " + api_key_create(partner=partner, name="sync", scopes=["lists:read"])[1]
    )
    seed_entries(default_list, 1_000)
    previous = hash_list_snapshot_build(hash_list=default_list)
    seed_entries(default_list, 20_000)  # the next snapshot needs far more than is left
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (free - 64 * 1024))

    stack.start_redis()
    worker = stack.worker()
    stack.run_python(
        "from hashlists import tasks; "
        f"tasks.hash_list_snapshot_build.delay(hash_list_id={default_list.pk})"
    )
    wait_for(lambda: "hash_list_snapshot_build" in log(worker) and "raised" in log(worker))

    assert list(Snapshot.objects.values_list("seq", flat=True)) == [1_000]
    assert snapshot_files(small_disk) == {Path(previous.file.name).name}  # nothing half-written
    assert "No space left on device" in log(worker)
    assert "snapshot not stored" in log(worker)  # the build's own account, with list and seq
    assert served_snapshot(api)["seq"] == 1_000
    metrics = render()  # what monitoring sees: the snapshot falls behind the feed
    assert 'tidportal_snapshot_seq{list="take-it-down"} 1000' in metrics
    assert 'tidportal_feed_seq{list="take-it-down"} 21000' in metrics

    filler.unlink()
    stack.beat()  # the next scheduled check finds the list due and builds it
    wait_for(lambda: Snapshot.objects.filter(seq=21_000).exists(), timeout=120)
    assert served_snapshot(api)["entry_count"] == 21_000
    assert len(snapshot_files(small_disk)) == 2
