"""Signed snapshots of a hash list (DESIGN.md section 4).

A snapshot is the list's active entries exactly as of sequence number S, as gzip'd JSON Lines
(one entry a line, in feed order), with its SHA-256 signed together with the list, S and the
count. Partners load it, then follow the feed after S.

"Active as of S" is computed from the feed itself: an entry is in the snapshot when its last
change with seq <= S is an ``add``. So a snapshot is exact for S whatever happened since, and
replaying the feed after S from it gives the current list.
"""

import gzip
import hashlib
import json
import logging
import secrets
import tempfile
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from hashlists import signing
from hashlists.models import HashList, ListChange, Snapshot

logger = logging.getLogger(__name__)

_CHUNK = 5_000


def snapshot_rows(*, hash_list: HashList, seq: int) -> Iterator[dict[str, Any]]:
    """The entries active on ``hash_list`` as of ``seq``, in the order they were added; streamed
    from the database in chunks (memory stays flat however long the list)."""
    # An entry's add whose entry has no later change up to ``seq``: an anti-join on the
    # (entry, seq) index, cheap whatever the planner believes about the table's size.
    later = ListChange.objects.filter(
        entry_id=OuterRef("entry_id"), seq__gt=OuterRef("seq"), seq__lte=seq
    )
    rows = (
        ListChange.objects.filter(hash_list=hash_list, seq__lte=seq, op="add")
        .exclude(Exists(later))
        .order_by("seq")
        .values_list(
            "entry__public_id",
            "entry__hash_type",
            "entry__value",
            "entry__media_type",
            "entry__quality",
            "entry__frames",
        )
    )
    for public_id, hash_type, value, media_type, quality, frames in rows.iterator(_CHUNK):
        row = {
            "id": str(public_id),
            "hash_type": hash_type,
            "value": value,
            "media_type": media_type,
            "quality": quality,
        }
        if frames is not None:
            row["frames"] = frames
        yield row


def hash_list_last_seq(*, hash_list: HashList) -> int:
    return (
        ListChange.objects.filter(hash_list=hash_list, seq__isnull=False).aggregate(m=Max("seq"))[
            "m"
        ]
        or 0
    )


def hash_list_snapshot_build(*, hash_list: HashList) -> Snapshot:
    """Build, sign and record the snapshot of ``hash_list`` at its latest sequenced change.

    Idempotent: if a snapshot at that seq exists it is returned. The file is written to a local
    temporary file, then stored under a fresh name, and only then recorded, so a crash at any
    point never leaves a recorded partial snapshot (at worst an unrecorded file, which pruning
    of orphans may remove). A save that fails (the storage full or unreachable) is logged, its
    partial file removed, and the error raised: the previous snapshot stays the newest, and the
    next scheduled build tries again. Raises ImproperlyConfigured when no signing key is
    configured.
    """
    seq = hash_list_last_seq(hash_list=hash_list)
    existing = Snapshot.objects.filter(hash_list=hash_list, seq=seq).first()
    if existing:
        return existing
    digest, count = hashlib.sha256(), 0
    with tempfile.TemporaryFile() as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed:
            for row in snapshot_rows(hash_list=hash_list, seq=seq):
                compressed.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")
                count += 1
        raw.seek(0)
        for block in iter(lambda: raw.read(1 << 20), b""):
            digest.update(block)
        size = raw.tell()
        sha256 = digest.hexdigest()
        key_id, signature = signing.sign_snapshot(
            list_slug=hash_list.slug, seq=seq, count=count, sha256=sha256
        )
        raw.seek(0)
        name = f"snapshots/{hash_list.slug}/{seq:012d}-{secrets.token_hex(6)}.jsonl.gz"
        try:
            stored = default_storage.save(name, File(raw, name=name))
        except Exception:
            logger.exception(
                "snapshot not stored", extra={"list": hash_list.slug, "seq": seq, "file": name}
            )
            _partial_delete(name)
            raise
    try:
        with transaction.atomic():
            snapshot = Snapshot.objects.create(
                hash_list=hash_list,
                seq=seq,
                entry_count=count,
                file=stored,
                size_bytes=size,
                sha256=sha256,
                key_id=key_id,
                signature=signature,
            )
    except IntegrityError:
        # Another builder recorded this seq first: keep theirs, drop our copy.
        default_storage.delete(stored)
        return Snapshot.objects.get(hash_list=hash_list, seq=seq)
    logger.info("snapshot built", extra={"list": hash_list.slug, "seq": seq, "entries": count})
    hash_list_snapshots_prune(hash_list=hash_list)
    return snapshot


def _partial_delete(name: str) -> None:
    """Remove what a failed save left under ``name`` (the disk filled up mid-write, say: the
    file system storage leaves the part it wrote). The name is fresh and random, so whatever is
    there is ours; a failure to remove it is logged, not raised over the save's own error."""
    try:
        if default_storage.exists(name):
            default_storage.delete(name)
    except Exception:
        logger.exception("partial snapshot not removed", extra={"file": name})


def hash_list_snapshots_prune(*, hash_list: HashList) -> int:
    """Delete all but the newest TID_SNAPSHOTS_KEPT snapshots of a list (rows and files)."""
    old = list(
        Snapshot.objects.filter(hash_list=hash_list).order_by("-seq")[settings.TID_SNAPSHOTS_KEPT :]
    )
    for snapshot in old:
        default_storage.delete(snapshot.file.name)
        snapshot.delete()
    return len(old)


def hash_list_snapshot_due(*, hash_list: HashList) -> bool:
    """Whether the list changed since its newest snapshot and either enough changes piled up or
    the newest snapshot is older than TID_SNAPSHOT_INTERVAL (or there is none)."""
    latest = Snapshot.objects.filter(hash_list=hash_list).order_by("-seq").first()
    seq = hash_list_last_seq(hash_list=hash_list)
    if latest is None:
        return True
    if seq <= latest.seq:
        return False
    age = (timezone.now() - latest.created_at).total_seconds()
    return (
        seq - latest.seq >= settings.TID_SNAPSHOT_CHANGES or age >= settings.TID_SNAPSHOT_INTERVAL
    )
