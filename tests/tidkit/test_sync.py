"""tidkit.sync against a live server: bootstrap from a signed snapshot, follow the feed, resume
after being killed without applying anything twice, and refuse snapshots that do not verify
while leaving the previous state exactly as it was."""

import base64
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from cases.services import case_withdraw
from hashlists import signing
from hashlists.models import HashList, Snapshot
from tests.helpers import accepted_case
from tests.tidkit.server import (
    active_entries,
    partner_key,
    random_image,
    random_video,
    snapshot,
)
from tidkit.client import NotFoundError, TidClient
from tidkit.index import HammingIndex
from tidkit.sync import (
    JOURNAL,
    StateError,
    VerificationError,
    open_list,
    read_checkpoint,
    sync,
)

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def rng():
    return random.Random(7)


@pytest.fixture
def client(live_server, partner):
    return TidClient(live_server.url, partner_key(partner), retries=0)


def local_entries(state: Path) -> dict[str, tuple[str, str]]:
    local, _checkpoint = open_list(state)
    return {e.id: (e.hash_type, e.value) for e in local.entries()}


def tree(state: Path) -> dict[str, str]:
    """Every file under ``state`` with the SHA-256 of its bytes: "untouched" made checkable."""
    return {
        str(path.relative_to(state)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(state.rglob("*"))
        if path.is_file()
    }


def test_first_sync_loads_the_snapshot_then_follows_the_feed(
    client, default_list, staff_user, tmp_path, rng
):
    for _ in range(3):
        accepted_case(staff_user, [random_image(rng)])
    accepted_case(staff_user, [random_video(rng)])
    built = snapshot(default_list)
    accepted_case(
        staff_user, [random_image(rng), random_image(rng)]
    )  # after the snapshot: feed only

    result = sync(client, tmp_path)

    assert result.snapshot_seq == built.seq
    assert result.seq_before is None
    assert result.added == 6  # two images: md5, pdq, phash each
    assert local_entries(tmp_path) == active_entries(default_list)
    checkpoint = read_checkpoint(tmp_path)
    assert checkpoint.list == "take-it-down"
    assert checkpoint.snapshot_seq == built.seq
    assert checkpoint.key_id == built.key_id
    assert checkpoint.seq == result.seq > built.seq
    assert checkpoint.counts == {"md5": 6, "pdq": 5, "phash": 5, "vpdq": 1, "total": 17}
    local, _ = open_list(tmp_path)
    video = next(e for e in local.entries() if e.hash_type == "vpdq")
    assert len(video.frames) == 4  # frames travel with a vPDQ entry

    again = sync(client, tmp_path)
    assert (again.added, again.removed, again.seq, again.snapshot_seq) == (0, 0, result.seq, None)


def test_a_list_without_a_snapshot_is_read_from_the_start_of_the_feed(
    client, default_list, staff_user, tmp_path, rng
):
    accepted_case(staff_user, [random_image(rng)])

    result = sync(client, tmp_path)

    assert result.snapshot_seq is None
    assert local_entries(tmp_path) == active_entries(default_list)
    assert read_checkpoint(tmp_path).snapshot_seq is None


def restore_an_older_backup(hash_list: HashList) -> None:
    """What restoring the server from an empty backup does to the list: every entry and change
    gone, sequence numbers starting again from 1."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE hashlists_snapshot, hashlists_listchange, hashlists_hashentrysource, "
            "hashlists_hashentry, hashlists_historicalhashentry, partners_matchreport, "
            "partners_webhookdelivery"
        )


@pytest.mark.parametrize("with_snapshot", [True, False], ids=["snapshot", "feed only"])
def test_a_feed_replaced_by_a_restore_is_noticed_and_the_list_loaded_again(
    client, default_list, staff_user, tmp_path, rng, with_snapshot
):
    for _ in range(3):
        accepted_case(staff_user, [random_image(rng)])
    snapshot(default_list)
    accepted_case(staff_user, [random_image(rng)])
    before = sync(client, tmp_path)
    assert before.seq == 12

    restore_an_older_backup(default_list)
    for _ in range(5):  # the new feed runs past the old checkpoint, with other changes
        accepted_case(staff_user, [random_image(rng)])
    if with_snapshot:
        snapshot(default_list)
    messages = []
    after = sync(client, tmp_path, on_progress=messages.append)

    assert any("no longer holds change 12" in m for m in messages)
    assert after.seq == 15
    assert local_entries(tmp_path) == active_entries(default_list)  # nothing of the old list


def test_an_unchanged_feed_is_followed_without_reloading(
    client, default_list, staff_user, tmp_path, rng
):
    accepted_case(staff_user, [random_image(rng)])
    snapshot(default_list)
    sync(client, tmp_path)
    accepted_case(staff_user, [random_image(rng)])
    result = sync(client, tmp_path)
    assert result.snapshot_seq is None and result.added == 3


def test_a_memory_cap_is_kept_from_sync_to_sync_until_changed(
    client, default_list, staff_user, tmp_path, rng
):
    def saved_cap() -> float | None:  # what the committed generation's PDQ index was built for
        generation = tmp_path / read_checkpoint(tmp_path).generation
        return HammingIndex.load(generation / "pdq.index").memory

    accepted_case(staff_user, [random_image(rng)])
    snapshot(default_list)
    sync(client, tmp_path, memory=2)
    assert read_checkpoint(tmp_path).memory == 2 and saved_cap() == 2
    accepted_case(staff_user, [random_image(rng)])
    assert sync(client, tmp_path).added == 3  # no cap given: the state's
    assert read_checkpoint(tmp_path).memory == 2 and open_list(tmp_path)[0].memory == 2

    before = read_checkpoint(tmp_path).generation
    sync(client, tmp_path, memory=0)  # lifted: indexed again and written out at once
    checkpoint = read_checkpoint(tmp_path)
    assert checkpoint.memory is None and checkpoint.generation != before
    assert saved_cap() is None and open_list(tmp_path)[0].memory is None
    assert local_entries(tmp_path) == active_entries(default_list)


def test_removals_are_applied_and_no_longer_match(client, default_list, staff_user, tmp_path, rng):
    kept, _pin = accepted_case(staff_user, [random_image(rng)])
    withdrawn_item = random_image(rng)
    withdrawn, _pin = accepted_case(staff_user, [withdrawn_item])
    snapshot(default_list)
    sync(client, tmp_path)
    local, _ = open_list(tmp_path)
    assert local.match(withdrawn_item)

    case_withdraw(case=withdrawn)
    result = sync(client, tmp_path)

    assert (result.added, result.removed) == (0, 3)
    assert local_entries(tmp_path) == active_entries(default_list)
    local, _ = open_list(tmp_path)
    assert local.match(withdrawn_item) == []
    assert {e.id for e in local.entries()} == set(active_entries(default_list))
    assert kept.items.count() == 1


def test_a_killed_sync_resumes_from_its_checkpoint_and_applies_each_change_once(
    live_server, partner, default_list, staff_user, tmp_path, rng
):
    """Kill `tidkit sync` (SIGKILL, no cleanup) again and again while it follows a feed one
    change per page; each run resumes from the last checkpoint. The result equals the list, and
    the journal holds every seq exactly once, in order."""
    snapshot(default_list)  # an empty snapshot at seq 0
    for _ in range(60):
        accepted_case(staff_user, [random_image(rng)])  # 180 changes
    last_seq = 180
    env = {
        **os.environ,
        "TIDKIT_URL": live_server.url,
        "TIDKIT_API_KEY": partner_key(partner),
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "tidkit", "sync", "--state", str(tmp_path), "--page-size", "1"]
    kills, seen_midway = 0, set()
    delays = random.Random(3)
    while len(seen_midway) < 3 and kills < 40:
        before = read_checkpoint(tmp_path)
        start = before.seq if before else 0
        process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        # Kill once this run has committed a few pages, at a random moment within the next page
        # or two: progress decides, not the machine's speed.
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            now = read_checkpoint(tmp_path)
            if now and now.seq >= start + 5:
                break
            time.sleep(0.005)
        time.sleep(delays.uniform(0, 0.03))
        if process.poll() is not None:
            break  # finished before the kill: the runs so far must have made it midway
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        checkpoint = read_checkpoint(tmp_path)
        if checkpoint and 0 < checkpoint.seq < last_seq:
            seen_midway.add(checkpoint.seq)
    assert len(seen_midway) >= 2, (kills, seen_midway)
    finish = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert finish.returncode == 0, finish.stderr

    checkpoint = read_checkpoint(tmp_path)
    assert checkpoint.seq == last_seq
    assert local_entries(tmp_path) == active_entries(default_list)
    journal = (tmp_path / checkpoint.generation / JOURNAL).read_bytes()
    committed = journal[: checkpoint.journal_bytes].splitlines()
    assert [json.loads(line)["seq"] for line in committed] == list(range(1, last_seq + 1))


def test_bytes_a_crash_left_after_the_checkpoint_are_never_applied(
    client, default_list, staff_user, tmp_path, rng
):
    """The window between writing the journal and the checkpoint: the journal holds a change
    the checkpoint does not. Readers ignore it and the next sync overwrites it."""
    accepted_case(staff_user, [random_image(rng)])
    snapshot(default_list)
    accepted_case(staff_user, [random_image(rng)])
    sync(client, tmp_path)
    checkpoint = read_checkpoint(tmp_path)
    stray = {
        "seq": checkpoint.seq + 1,
        "op": "add",
        "n": 999,
        "id": "00000000-0000-4000-8000-000000000001",
        "hash_type": "md5",
        "value": "f" * 32,
        "media_type": "image",
        "quality": None,
    }
    with open(tmp_path / checkpoint.generation / JOURNAL, "a") as fh:
        fh.write(json.dumps(stray) + "\n" + '{"seq": 99, "op": "ad')  # and a torn line

    assert stray["id"] not in local_entries(tmp_path)
    accepted_case(staff_user, [random_image(rng)])
    result = sync(client, tmp_path)

    assert result.added == 3
    assert local_entries(tmp_path) == active_entries(default_list)
    journal = (tmp_path / checkpoint.generation / JOURNAL).read_bytes()
    assert b"0000-4000" not in journal and b'"ad' not in journal.rsplit(b"\n", 2)[-1]


def test_a_long_journal_is_compacted_into_a_new_generation(
    client, default_list, staff_user, tmp_path, rng
):
    cases = [accepted_case(staff_user, [random_image(rng)])[0] for _ in range(3)]
    snapshot(default_list)
    sync(client, tmp_path)
    first = read_checkpoint(tmp_path)
    accepted_case(staff_user, [random_image(rng), random_video(rng)])
    case_withdraw(case=cases[0])

    result = sync(client, tmp_path, page_size=2, compact_after=5)

    assert result.compacted and (result.added, result.removed) == (5, 3)
    checkpoint = read_checkpoint(tmp_path)
    assert checkpoint.generation != first.generation
    assert (checkpoint.journal_bytes, checkpoint.journal_changes) == (0, 0)
    assert not (tmp_path / first.generation).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.json",
        checkpoint.generation,
        "lock",
    ]
    assert local_entries(tmp_path) == active_entries(default_list)
    # The numbers the indexes use survive compaction: a later change applies on top.
    local, _ = open_list(tmp_path)
    numbers = {e.id: local.number_of(e.id) for e in local.entries()}
    accepted_case(staff_user, [random_image(rng)])
    sync(client, tmp_path)
    local, _ = open_list(tmp_path)
    assert {i: local.number_of(i) for i in numbers} == numbers
    assert local_entries(tmp_path) == active_entries(default_list)


def _other_signature(message: bytes) -> bytes:
    return Ed25519PrivateKey.generate().sign(message)


def tamper_signature(snap: Snapshot) -> None:
    """Signed by someone else's key (claiming the real key id)."""
    message = signing.snapshot_message(
        list_slug=snap.hash_list.slug, seq=snap.seq, count=snap.entry_count, sha256=snap.sha256
    )
    Snapshot.objects.filter(pk=snap.pk).update(signature=_other_signature(message))


def tamper_bytes(snap: Snapshot) -> None:
    """The stored file changed (an entry dropped), metadata left alone."""
    _rewrite_without_first_line(snap)


def tamper_bytes_and_digest(snap: Snapshot) -> None:
    """The file and its recorded SHA-256 and count changed together: only the signature can
    tell."""
    data = _rewrite_without_first_line(snap)
    Snapshot.objects.filter(pk=snap.pk).update(
        sha256=hashlib.sha256(data).hexdigest(), entry_count=snap.entry_count - 1
    )


def tamper_key_id(snap: Snapshot) -> None:
    """Signed with a key the server does not publish."""
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    message = signing.snapshot_message(
        list_slug=snap.hash_list.slug, seq=snap.seq, count=snap.entry_count, sha256=snap.sha256
    )
    Snapshot.objects.filter(pk=snap.pk).update(
        key_id=signing.key_id_for(raw), signature=key.sign(message)
    )


def _rewrite_without_first_line(snap: Snapshot) -> bytes:
    import gzip

    with default_storage.open(snap.file.name, "rb") as fh:
        lines = gzip.decompress(fh.read()).splitlines(keepends=True)
    data = gzip.compress(b"".join(lines[1:]), mtime=0)
    default_storage.delete(snap.file.name)
    default_storage.save(snap.file.name, ContentFile(data))
    return data


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (tamper_signature, "does not carry a valid signature"),
        (tamper_bytes, "do not match its SHA-256"),
        (tamper_bytes_and_digest, "does not carry a valid signature"),
        (tamper_key_id, "which is not among /api/v1/keys"),
    ],
    ids=["signature", "bytes", "bytes-and-digest", "unknown-key"],
)
def test_a_snapshot_that_does_not_verify_leaves_the_old_state_untouched(
    client, default_list, staff_user, tmp_path, rng, tamper, message
):
    accepted_case(staff_user, [random_image(rng)])
    snapshot(default_list)
    sync(client, tmp_path)
    before = tree(tmp_path)
    entries_before = local_entries(tmp_path)
    accepted_case(staff_user, [random_image(rng), random_image(rng)])
    tamper(snapshot(default_list))

    with pytest.raises(VerificationError, match=message):
        sync(client, tmp_path, bootstrap=True)

    assert tree(tmp_path) == before
    assert local_entries(tmp_path) == entries_before
    # The same snapshot refused on a first sync leaves no state at all.
    fresh = tmp_path / "fresh"
    with pytest.raises(VerificationError, match=message):
        sync(client, fresh)
    assert read_checkpoint(fresh) is None
    assert [p.name for p in fresh.iterdir()] == ["lock"]


def test_pinned_keys_replace_the_published_ones(client, default_list, staff_user, tmp_path, rng):
    accepted_case(staff_user, [random_image(rng)])
    built = snapshot(default_list)
    server_key = signing.raw_public(signing.signing_key().public_key())
    stranger = Ed25519PrivateKey.generate().public_key()

    with pytest.raises(VerificationError, match="not among the pinned keys"):
        sync(client, tmp_path, trusted_keys={"abcd": signing.raw_public(stranger)})
    with pytest.raises(VerificationError, match="does not have that id"):
        sync(client, tmp_path, trusted_keys={built.key_id: signing.raw_public(stranger)})

    result = sync(client, tmp_path, trusted_keys={built.key_id: server_key})
    assert result.snapshot_seq == built.seq
    published = client.keys()
    assert base64.b64encode(server_key).decode() in {k["public_key"] for k in published}


def test_a_state_directory_holds_one_list_from_one_server(
    client, live_server, partner, default_list, staff_user, tmp_path, rng
):
    other = HashList.objects.create(slug="other", name="Other", published=True)
    partner.readable_lists.add(other)
    accepted_case(staff_user, [random_image(rng)])
    sync(client, tmp_path)

    with pytest.raises(StateError, match="holds the list 'take-it-down', not 'other'"):
        sync(client, tmp_path, "other")
    moved = TidClient(live_server.url.replace("localhost", "127.0.0.1"), client.api_key)
    with pytest.raises(StateError, match="was synced from"):
        sync(moved, tmp_path)


def test_a_list_not_granted_is_not_found(client, staff_user, default_list, tmp_path):
    HashList.objects.create(slug="hidden", name="Hidden", published=True)

    with pytest.raises(NotFoundError, match="Not found, or not granted"):
        sync(client, tmp_path, "hidden")
    assert read_checkpoint(tmp_path) is None


def test_a_second_sync_on_the_same_state_is_refused_while_one_runs(client, default_list, tmp_path):
    import fcntl

    tmp_path.joinpath("lock").touch()
    with open(tmp_path / "lock", "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(StateError, match="Another tidkit sync is running"):
            sync(client, tmp_path)
