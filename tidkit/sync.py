"""Keep a local copy of a hash list in step with the server (DESIGN.md sections 4 and 9).

``sync`` bootstraps from the newest signed snapshot, then follows the change feed ``after=seq``
page by page. The state directory holds::

    checkpoint.json      the commit point: list, seq, snapshot seq, signing key id, counts, and
                         which generation and how much of its journal are committed
    gen-000007/          one generation, never modified once the checkpoint names it, except for
      entries.jsonl        appends to its journal past the committed length
      pdq.index            (tidkit.store.LocalList.save)
      phash.index
      journal.jsonl      feed changes applied since the generation was written, one a line
    lock                 held by a running sync

Atomicity: a page of changes is appended to the journal and fsynced, and only then is the
checkpoint (which records the journal's committed length and the new seq) replaced atomically
(temporary file, fsync, ``os.replace``, fsync of the directory). Whoever opens the state reads
the generation and replays exactly the committed part of its journal; bytes past it (a sync
killed between the two steps) are ignored and cut off by the next sync, so an interrupted sync
resumes from the last checkpoint and applies each change exactly once. Bootstraps and compactions
write a whole new generation under a temporary name, rename it into place, then switch the
checkpoint to it; until that switch the old state is untouched.

Verification: the snapshot's SHA-256 is computed over the downloaded bytes, and its Ed25519
signature is checked over the message tidkit builds itself from the list asked for, the seq,
the entry count and that SHA-256 (hashlists/signing.py on the server), with the public key whose
id the snapshot names, from ``/api/v1/keys`` or from keys pinned by the caller. Any mismatch
raises VerificationError before anything in the state directory changes.
"""

import base64
import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tidkit.client import NotFoundError, TidClient
from tidkit.errors import TidkitError
from tidkit.store import Entry, ListDataError, LocalList

__all__ = [
    "Checkpoint",
    "FeedError",
    "StateError",
    "SyncError",
    "SyncResult",
    "VerificationError",
    "open_list",
    "read_checkpoint",
    "snapshot_message",
    "sync",
    "verify_snapshot",
]

DEFAULT_LIST = "take-it-down"
CHECKPOINT = "checkpoint.json"
JOURNAL = "journal.jsonl"
LOCK = "lock"
STATE_FORMAT = 1
MESSAGE_VERSION = "tidportal-snapshot-v1"
PAGE_SIZE = 10_000
# Compact (write a fresh generation) once the journal holds this many changes: replaying it when
# the list is opened stays well under a second, and rewriting the columns is cheap.
COMPACT_CHANGES = 20_000


class SyncError(TidkitError):
    """Sync stopped; the state directory is as the last checkpoint left it."""


class VerificationError(SyncError):
    """A snapshot failed verification (signature, SHA-256, key, seq or count): not applied."""


class FeedError(SyncError):
    """The server's feed or snapshot broke the protocol (a gap in seqs, a malformed entry)."""


class StateError(SyncError):
    """The state directory is missing, locked by another sync, or belongs to another list."""


@dataclass
class Checkpoint:
    """What checkpoint.json holds. ``seq`` is the last change applied."""

    list: str
    server: str
    seq: int
    snapshot_seq: int | None
    key_id: str | None
    generation: str
    journal_bytes: int = 0
    journal_changes: int = 0
    next_number: int = 1
    counts: dict[str, int] = field(default_factory=dict)
    updated_at: str = ""
    format: int = STATE_FORMAT
    # [seq, op, entry id] of the last feed change applied (None when ``seq`` came from a
    # snapshot): what tells a feed that was replaced (a server restored from a backup).
    last_change: list | None = None
    memory: float | None = None  # the PDQ index's cap (LocalList), kept from sync to sync


@dataclass
class SyncResult:
    list: str
    seq_before: int | None  # None on a first sync
    seq: int
    snapshot_seq: int | None  # the snapshot bootstrapped from in this run, if any
    added: int
    removed: int
    counts: dict[str, int]
    compacted: bool


# -- public entry points ---------------------------------------------------------------------


def sync(
    client: TidClient,
    state_dir: str | os.PathLike[str],
    list_slug: str = DEFAULT_LIST,
    *,
    page_size: int = PAGE_SIZE,
    bootstrap: bool = False,
    trusted_keys: Mapping[str, bytes] | None = None,
    on_progress: Callable[[str], None] | None = None,
    compact_after: int = COMPACT_CHANGES,
    memory: float | None = None,
) -> SyncResult:
    """Bring ``state_dir``'s copy of ``list_slug`` up to the server's newest change.

    A first sync (or ``bootstrap=True``, or a state so far behind that the feed would be longer
    than the newest snapshot) loads the newest snapshot after verifying it; a list with no
    snapshot yet is read from the feed's start. ``trusted_keys`` (key id -> raw 32-byte Ed25519
    public key) pins the signing keys instead of asking the server for them. Once the journal
    of feed changes holds ``compact_after`` changes, the list is written out afresh. ``memory``
    caps the PDQ index (LocalList) from now on, 0 removes the cap, None keeps the state's.

    Raises VerificationError (state untouched), FeedError, StateError, or the client's errors.
    Every page applied before an error stays applied and checkpointed.
    """
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    say = on_progress or (lambda message: None)
    with _locked(state):
        checkpoint = read_checkpoint(state)
        if checkpoint is not None:
            if checkpoint.list != list_slug:
                raise StateError(
                    f"{state} holds the list {checkpoint.list!r}, not {list_slug!r}: "
                    "use one state directory per list."
                )
            if checkpoint.server != client.base_url and not bootstrap:
                raise StateError(
                    f"{state} was synced from {checkpoint.server}, not {client.base_url}: use "
                    "another state directory, or --bootstrap to start over from this server."
                )
        _remove_leftovers(state, checkpoint)
        seq_before = checkpoint.seq if checkpoint else None
        if memory is None:
            memory = checkpoint.memory if checkpoint else None
        memory = memory or None  # (0: no cap)

        snapshot_seq, unwritten = None, False
        replaced = (
            checkpoint is not None
            and checkpoint.server == client.base_url
            and not bootstrap
            and _feed_replaced(client, list_slug, checkpoint)
        )
        if replaced:
            say(
                f"The server's feed no longer holds change {checkpoint.seq} as this copy applied "
                "it (was the server restored from a backup?): starting again from its list."
            )
        meta = _newest_snapshot(client, list_slug)
        if meta is not None and _should_bootstrap(checkpoint, meta, force=bootstrap or replaced):
            say(f"Loading snapshot {list_slug}@{meta['seq']} ({meta['entry_count']} entries)")
            local, checkpoint = _bootstrap(
                client, state, list_slug, meta, trusted_keys, checkpoint, memory
            )
            snapshot_seq = meta["seq"]
        elif checkpoint is None or checkpoint.server != client.base_url or replaced:
            # No snapshot yet: the feed from its start is the whole list. Nothing is written
            # until the server has answered for the list (it may not exist or not be granted).
            checkpoint = _empty(list_slug, client, checkpoint, memory)
            local, unwritten = LocalList(memory=memory), True
        elif checkpoint.memory != memory:  # the index is built again with the new cap
            say("Indexing the list again for the new memory cap")
            checkpoint = replace(checkpoint, memory=memory)
            local = _load(state, checkpoint)
            checkpoint = _write_generation(state, local, checkpoint)
        else:
            local = _load(state, checkpoint)

        added = removed = 0
        while True:
            page = client.changes(list_slug, after=checkpoint.seq, limit=page_size)
            changes = _checked_page(page, after=checkpoint.seq)
            if unwritten:
                checkpoint, unwritten = _write_generation(state, local, checkpoint), False
            if changes:
                checkpoint, page_added, page_removed = _apply_page(
                    state, checkpoint, local, changes
                )
                added, removed = added + page_added, removed + page_removed
                say(f"Applied changes up to seq {checkpoint.seq}")
            if not page["has_more"]:
                break

        compacted = checkpoint.journal_changes >= compact_after
        if compacted:
            checkpoint = _write_generation(state, local, checkpoint)
        return SyncResult(
            list=list_slug,
            seq_before=seq_before,
            seq=checkpoint.seq,
            snapshot_seq=snapshot_seq,
            added=added,
            removed=removed,
            counts=checkpoint.counts,
            compacted=compacted,
        )


def read_checkpoint(state_dir: str | os.PathLike[str]) -> Checkpoint | None:
    """The committed checkpoint of ``state_dir``, or None if it was never synced."""
    path = Path(state_dir) / CHECKPOINT
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise StateError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        raise StateError(f"{path} was not written by this version of tidkit.")
    try:
        return Checkpoint(**data)
    except TypeError as exc:
        raise StateError(f"{path} is not a tidkit checkpoint: {exc}") from None


def open_list(state_dir: str | os.PathLike[str]) -> tuple[LocalList, Checkpoint]:
    """Load the committed copy of the list in ``state_dir`` for matching.

    Safe while a sync runs: it reads only committed data, and retries if a compaction replaced
    the generation it was reading. Raises StateError if the directory was never synced.
    """
    state = Path(state_dir)
    for attempt in range(5):
        checkpoint = read_checkpoint(state)
        if checkpoint is None:
            raise StateError(f"No list has been synced into {state} yet: run `tidkit sync` first.")
        try:
            return _load(state, checkpoint), checkpoint
        except FileNotFoundError:
            if attempt == 4:
                raise
            time.sleep(0.2)  # a sync switched generations while we read: read the new one
    raise AssertionError("unreachable")


def snapshot_message(*, list_slug: str, seq: int, count: int, sha256: str) -> bytes:
    """What a snapshot's signature covers; the server signs this same message
    (hashlists.signing imports it)."""
    return f"{MESSAGE_VERSION}\n{list_slug}\n{seq}\n{count}\n{sha256}\n".encode()


def key_id_for(raw_public_key: bytes) -> str:
    """A signing key's id: the first 16 hex digits of the SHA-256 of the raw public key."""
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def verify_snapshot(
    path: str | os.PathLike[str],
    *,
    list_slug: str,
    seq: int,
    entry_count: int,
    sha256: str,
    signature: bytes,
    public_key: bytes,
) -> None:
    """Check a downloaded snapshot file against its metadata and signature.

    Raises VerificationError if the file's SHA-256 is not ``sha256`` or the signature is not the
    holder of ``public_key`` signing (list, seq, entry count, SHA-256). The entry count is
    checked against the file's lines when it is read (``read_snapshot``).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise VerificationError(
            f"The snapshot's bytes do not match its SHA-256 (expected {sha256}, got "
            f"{digest.hexdigest()}): the file was altered or damaged. Nothing was changed."
        )
    message = snapshot_message(list_slug=list_slug, seq=seq, count=entry_count, sha256=sha256)
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        raise VerificationError(
            f"The snapshot {list_slug}@{seq} does not carry a valid signature of key "
            f"{key_id_for(public_key)}. Nothing was changed."
        ) from None


def read_snapshot(path: str | os.PathLike[str]) -> Iterator[Entry]:
    """The entries of a snapshot file (gzip'd JSON Lines), validated one by one."""
    try:
        with gzip.open(path, "rb") as fh:
            for number, line in enumerate(fh, start=1):
                try:
                    yield Entry.from_json(json.loads(line))
                except ValueError as exc:
                    raise FeedError(f"Snapshot line {number}: {exc}") from None
    except (OSError, EOFError) as exc:
        raise FeedError(f"The snapshot file cannot be read: {exc}") from None


# -- steps -----------------------------------------------------------------------------------


def _newest_snapshot(client: TidClient, list_slug: str) -> dict[str, Any] | None:
    try:
        return client.snapshot_meta(list_slug)
    except NotFoundError:
        # Either the list has no snapshot yet, or it is not granted: the feed tells which.
        return None


def _feed_replaced(client: TidClient, list_slug: str, checkpoint: Checkpoint) -> bool:
    """Whether the change at the checkpoint's seq is gone from the server's feed, or is another
    change than the one applied: the server's feed was replaced, and following it from here
    would mix two lists. One small request."""
    if checkpoint.seq == 0:
        return False
    page = client.changes(list_slug, after=checkpoint.seq - 1, limit=1)
    changes = page.get("changes") if isinstance(page, dict) else None
    if not changes or not isinstance(changes[0], dict) or changes[0].get("seq") != checkpoint.seq:
        return True
    if checkpoint.last_change is None:
        return False  # reached from a snapshot: that the seq exists is all there is to check
    _seq, op, entry_id = checkpoint.last_change
    return changes[0].get("op") != op or str(changes[0].get("id")) != entry_id


def _should_bootstrap(
    checkpoint: Checkpoint | None, meta: Mapping[str, Any], *, force: bool
) -> bool:
    if checkpoint is None or force:
        return True
    behind = meta["seq"] - checkpoint.seq
    # Far behind: reading the feed would take longer than loading the whole list.
    return behind > max(meta["entry_count"], PAGE_SIZE)


def _signing_key(client: TidClient, key_id: str, trusted_keys: Mapping[str, bytes] | None) -> bytes:
    if trusted_keys is not None:
        candidates = dict(trusted_keys)
    else:
        candidates = {}
        published = client.keys()
        for key in published:
            if key.get("algorithm", "Ed25519") != "Ed25519":
                continue
            try:
                candidates[key["key_id"]] = base64.b64decode(key["public_key"], validate=True)
            except (KeyError, ValueError):
                continue
    raw = candidates.get(key_id)
    if raw is None:
        where = "the pinned keys" if trusted_keys is not None else "/api/v1/keys"
        raise VerificationError(
            f"The snapshot is signed with key {key_id!r}, which is not among {where}. "
            "Nothing was changed."
        )
    if key_id_for(raw) != key_id:
        raise VerificationError(
            f"The public key published as {key_id!r} does not have that id. Nothing was changed."
        )
    return raw


def _bootstrap(
    client: TidClient,
    state: Path,
    list_slug: str,
    meta: Mapping[str, Any],
    trusted_keys: Mapping[str, bytes] | None,
    old: Checkpoint | None,
    memory: float | None,
) -> tuple[LocalList, Checkpoint]:
    """Download, verify and load a snapshot into a new generation, then switch to it."""
    if meta.get("list") != list_slug:
        raise VerificationError(f"Asked for {list_slug!r}'s snapshot, got {meta.get('list')!r}.")
    seq, count, sha256 = int(meta["seq"]), int(meta["entry_count"]), str(meta["sha256"])
    expected = snapshot_message(list_slug=list_slug, seq=seq, count=count, sha256=sha256)
    if meta.get("signed_message", expected.decode()) != expected.decode():
        raise VerificationError(
            "The server describes the signed message differently from this version of tidkit "
            f"({meta.get('signed_message')!r}); upgrade tidkit. Nothing was changed."
        )
    try:
        signature = base64.b64decode(meta["signature"], validate=True)
    except (KeyError, ValueError):
        raise VerificationError("The snapshot's signature is not valid base64.") from None
    public_key = _signing_key(client, str(meta["key_id"]), trusted_keys)
    workdir = Path(tempfile.mkdtemp(prefix="tmp-download-", dir=state))
    try:
        path = workdir / "snapshot.jsonl.gz"
        downloaded = client.download_snapshot(list_slug, seq, path)
        if downloaded != sha256:
            raise VerificationError(
                f"The snapshot's bytes do not match its SHA-256 (expected {sha256}, got "
                f"{downloaded}): the file was altered or damaged. Nothing was changed."
            )
        verify_snapshot(
            path,
            list_slug=list_slug,
            seq=seq,
            entry_count=count,
            sha256=sha256,
            signature=signature,
            public_key=public_key,
        )
        try:
            local = LocalList.from_entries(read_snapshot(path), memory=memory)
        except ListDataError as exc:
            raise FeedError(f"The snapshot: {exc}") from None
        if len(local) != count:
            raise VerificationError(
                f"The snapshot holds {len(local)} entries but is signed for {count}."
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    checkpoint = Checkpoint(
        list=list_slug,
        server=client.base_url,
        seq=seq,
        snapshot_seq=seq,
        key_id=str(meta["key_id"]),
        generation=old.generation if old else "gen-000000",
        memory=memory,
    )
    return local, _write_generation(state, local, checkpoint)


def _empty(
    list_slug: str, client: TidClient, old: Checkpoint | None, memory: float | None
) -> Checkpoint:
    return Checkpoint(
        list=list_slug,
        server=client.base_url,
        seq=0,
        snapshot_seq=None,
        key_id=None,
        generation=old.generation if old else "gen-000000",
        memory=memory,
    )


@dataclass(frozen=True, slots=True)
class _Change:
    seq: int
    entry: Entry | None  # the entry added, or None for a removal
    entry_id: str


def _checked_page(page: Mapping[str, Any], *, after: int) -> list[_Change]:
    """The page's changes, checked to continue the feed exactly (seqs after+1, after+2, ...)
    and to carry canonical entries."""
    try:
        changes, next_seq, has_more = page["changes"], page["next"], page["has_more"]
    except (KeyError, TypeError):
        raise FeedError(f"A feed page lacks changes, next or has_more: {page!r:.200}") from None
    checked, expected = [], after
    for change in changes:
        expected += 1
        if not isinstance(change, dict) or change.get("seq") != expected:
            got = change.get("seq") if isinstance(change, dict) else change
            raise FeedError(
                f"The feed skipped or repeated a change: expected seq {expected}, got {got!r}."
            )
        try:
            if change.get("op") == "add":
                entry = Entry.from_json(change)
                checked.append(_Change(expected, entry, entry.id))
            elif change.get("op") == "remove":
                checked.append(_Change(expected, None, str(uuid.UUID(str(change["id"])))))
            else:
                raise FeedError(f"Change {expected} has an unknown op {change.get('op')!r}.")
        except (ListDataError, KeyError, ValueError) as exc:
            raise FeedError(f"Change {expected}: {exc}") from None
    if next_seq != expected:
        raise FeedError(f"The feed page says next={next_seq!r} after seq {expected}.")
    if has_more and not changes:
        raise FeedError("The feed says it has more but sent no change.")
    return checked


def _apply_page(
    state: Path, checkpoint: Checkpoint, local: LocalList, changes: list[_Change]
) -> tuple[Checkpoint, int, int]:
    """Apply one page in memory and commit it: journal first, then the checkpoint."""
    lines, added = [], 0
    for change in changes:
        if change.entry is not None:
            number = local.add(change.entry)
            record = {"seq": change.seq, "op": "add", "n": number, **change.entry.to_json()}
            added += 1
        else:
            local.remove(change.entry_id)
            record = {"seq": change.seq, "op": "remove", "id": change.entry_id}
        lines.append(json.dumps(record, separators=(",", ":")) + "\n")
    data = "".join(lines).encode()
    journal = state / checkpoint.generation / JOURNAL
    with open(journal, "r+b") as fh:
        fh.truncate(checkpoint.journal_bytes)  # whatever an interrupted sync left uncommitted
        fh.seek(checkpoint.journal_bytes)
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    committed = Checkpoint(
        **{
            **asdict(checkpoint),
            "seq": changes[-1].seq,
            "last_change": [
                changes[-1].seq,
                "add" if changes[-1].entry is not None else "remove",
                changes[-1].entry_id,
            ],
            "journal_bytes": checkpoint.journal_bytes + len(data),
            "journal_changes": checkpoint.journal_changes + len(changes),
            "next_number": local.next_number,
            "counts": local.counts(),
        }
    )
    _write_checkpoint(state, committed)
    return committed, added, len(changes) - added


def _write_generation(state: Path, local: LocalList, checkpoint: Checkpoint) -> Checkpoint:
    """Write ``local`` as a new generation, switch the checkpoint to it, drop the old one."""
    number = int(checkpoint.generation.removeprefix("gen-")) + 1
    name = f"gen-{number:06d}"
    work = Path(tempfile.mkdtemp(prefix=f"tmp-{name}-", dir=state))
    local.save(work)
    (work / JOURNAL).touch()
    _fsync_tree(work)
    final = state / name
    if final.exists():  # left by a run that died before its checkpoint named it
        shutil.rmtree(final)
    os.replace(work, final)
    _fsync_dir(state)
    committed = Checkpoint(
        **{
            **asdict(checkpoint),
            "generation": name,
            "journal_bytes": 0,
            "journal_changes": 0,
            "next_number": local.next_number,
            "counts": local.counts(),
        }
    )
    _write_checkpoint(state, committed)
    if checkpoint.generation != name:
        shutil.rmtree(state / checkpoint.generation, ignore_errors=True)
    return committed


def _write_checkpoint(state: Path, checkpoint: Checkpoint) -> None:
    checkpoint.updated_at = datetime.now(UTC).isoformat(timespec="seconds")
    data = json.dumps(asdict(checkpoint), indent=2, sort_keys=True).encode() + b"\n"
    temporary = state / (CHECKPOINT + ".tmp")
    with open(temporary, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, state / CHECKPOINT)
    _fsync_dir(state)


def _load(state: Path, checkpoint: Checkpoint) -> LocalList:
    """The generation the checkpoint names, with the committed part of its journal replayed."""
    generation = state / checkpoint.generation
    local = LocalList.load(generation, next_number=checkpoint.next_number, memory=checkpoint.memory)
    with open(generation / JOURNAL, "rb") as fh:
        committed = fh.read(checkpoint.journal_bytes)
    if len(committed) != checkpoint.journal_bytes:
        raise StateError(f"{generation / JOURNAL} is shorter than its checkpoint says.")
    for line in committed.splitlines():
        record = json.loads(line)
        if record["op"] == "add":
            local.add(Entry.from_json(record), record["n"])
        else:
            local.remove(record["id"])
    local.next_number = max(local.next_number, checkpoint.next_number)
    return local


def _remove_leftovers(state: Path, checkpoint: Checkpoint | None) -> None:
    """Generations and downloads of runs that stopped before their checkpoint (under the lock)."""
    keep = checkpoint.generation if checkpoint else None
    for child in state.iterdir():
        if child.is_dir() and child.name.startswith(("gen-", "tmp-")) and child.name != keep:
            shutil.rmtree(child, ignore_errors=True)


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    """One sync at a time per state directory (advisory; a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: one sync at a time is the operator's to ensure
        yield
        return
    with open(state / LOCK, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(f"Another tidkit sync is running on {state}.") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _fsync_tree(directory: Path) -> None:
    for root, _dirs, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(root))


def _fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (POSIX; Windows has no such call)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
