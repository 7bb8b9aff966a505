"""Partner reads from a PostgreSQL streaming replica, within a bound on its lag.

With ``DATABASE_REPLICA_URL`` set, a ``replica`` database alias exists and ``ReplicaRouter`` is
installed; without it nothing here has any effect. Even then, every query goes to the primary
except inside a function decorated with ``@replica_reads``, which only these use (docs/deploy.md
says why each):

- the partner API's list, feed and snapshot-metadata views (hashlists/api/views.py) and
  StopNCII FetchHashes (partners/compat/views.py): reads that every partner repeats and that
  tolerate a few seconds' lag;
- the hosted lookup's full load of a list into a worker's index (hashlists/lookup.py), after
  which the index catches up from the primary, so lookups never answer from a stale index.

Authentication stays on the primary (DRF authenticates and throttles before the decorated
handler runs), so a revoked key or a suspended partner fails on the very next request; so do
every write, a partner's match reports (it reads what it just wrote), the snapshot download
(it must find the snapshot that metadata from either database named), staff and reporters.

The lag bound. Each process measures, at most once a second, how far the replica is behind:
it notes the primary's WAL position (``pg_current_wal_lsn()``) with the time, then reads the
position the replica has replayed (``pg_last_wal_replay_lsn()``). Every transaction committed
on the primary before a noted time is in WAL below the position noted then, so a replica that
has replayed past it holds all of them: it is fresh *as of* the latest such time. A decorated
read goes to the replica only while that time is less than TID_REPLICA_MAX_LAG_SECONDS ago
(now, not at the measurement), only when the replica answered the last check, and never inside
a transaction on the primary. If a read on the replica fails anyway (it stopped; a query
cancelled by a conflict with recovery), the replica is left alone for a while and the function
runs again on the primary: decorated functions only read, so running one twice is safe.
Partners therefore never get an error, nor an answer staler than the bound, because of the
replica. (With ``synchronous_commit = off`` on the primary, a commit can reach WAL up to
``wal_writer_delay`` after it returns; keep the default ``on``.)

Why a lagging replica can only show fewer changes, never skip one. Readers page the feed by
``seq``. The sequencer numbers committed changes in one transaction under an advisory lock,
continuing each list from its highest seq, so on the primary every committed state of a list's
feed is seqs 1..N with no gap (hashlists/services.py). A streaming replica replays the
primary's WAL in commit order, so at any moment it shows one of those committed states: seqs
1..M with M <= N. A reader that read up to seq K anywhere and asks ``after=K`` gets from the
replica either the changes after K that it holds (the next ones, in order) or nothing, and sees
the rest later, from whichever database answers; ``next`` stays K on an empty page. FetchHashes
relies on the same order: changes sequenced later are stamped later and committed later, so the
changes a replica does not hold yet all come after the last one it delivered.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from contextvars import ContextVar
from functools import cache, wraps
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

logger = logging.getLogger(__name__)

REPLICA = "replica"
CHECK_INTERVAL = 1.0  # seconds between two measurements of the lag in one process
UNREACHABLE_PAUSE = 10.0  # seconds a process leaves a replica alone after it failed
HISTORY_SECONDS = 300.0  # how far back primary positions are kept (lag is known up to this)

# The database that reads go to in this thread or task: set only by @replica_reads.
_reading_from: ContextVar[str | None] = ContextVar("tidportal_reading_from", default=None)

P = ParamSpec("P")
R = TypeVar("R")


class ReplicaRouter:
    """Reads go to the replica inside ``@replica_reads`` (when it is fresh), everything else to
    the primary, whichever database an object was read from; migrations run on the primary
    only (the replica follows it)."""

    def db_for_read(self, model: type, **hints: Any) -> str:
        return _reading_from.get() or DEFAULT_DB_ALIAS

    def db_for_write(self, model: type, **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # one database, two copies

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS


def _lsn(text: str) -> int:
    """A WAL position ``'16/B374D848'`` as a number."""
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


class ReplicaMonitor:
    """This process's knowledge of how far the replica is behind the primary."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.samples: deque[tuple[float, int]] = deque()  # (monotonic time, primary WAL position)
        self.next_check = 0.0
        self.fresh_as_of: float | None = None  # the replica holds every commit before this
        self.reachable = False
        self.lag: float | None = None  # at the last measurement, in seconds

    def usable(self) -> bool:
        """Whether a read may go to the replica now: it answered the last check and holds every
        commit older than the lag bound. Measures again when the last check is a second old
        (one thread measures; the others use what is known meanwhile)."""
        now = time.monotonic()
        if now >= self.next_check and self.lock.acquire(blocking=False):
            try:
                self._measure(now)
            finally:
                self.lock.release()
        fresh_as_of = self.fresh_as_of
        return fresh_as_of is not None and now - fresh_as_of <= settings.TID_REPLICA_MAX_LAG_SECONDS

    def measure(self) -> None:
        """Measure now, whatever was known or paused (for /metrics)."""
        with self.lock:
            self._measure(time.monotonic())

    def unreachable(self) -> None:
        """A read on the replica failed: leave it alone for UNREACHABLE_PAUSE seconds."""
        self.reachable, self.fresh_as_of, self.lag = False, None, None
        self.next_check = time.monotonic() + UNREACHABLE_PAUSE

    def _measure(self, now: float) -> None:
        self.next_check = now + CHECK_INTERVAL
        try:
            # The primary's position is read after ``now``: it covers every commit before it.
            primary = _query(DEFAULT_DB_ALIAS, "SELECT pg_current_wal_lsn()::text")
        except DatabaseError:
            self.fresh_as_of = None  # nothing known; the request fails on the primary anyway
            return
        self.samples.append((now, _lsn(primary)))
        while now - self.samples[0][0] > HISTORY_SECONDS:
            self.samples.popleft()
        try:
            replayed = _query(REPLICA, "SELECT pg_last_wal_replay_lsn()::text")
        except DatabaseError:
            logger.warning("replica check failed: reading from the primary", exc_info=True)
            _close(REPLICA)
            self.unreachable()
            return
        if replayed is None:
            # Not in recovery: a promoted standby or a mistake, which would never see new writes.
            logger.error("DATABASE_REPLICA_URL is not a standby: reading from the primary")
            self.unreachable()
            return
        position = _lsn(replayed)
        held = [at for at, lsn in self.samples if lsn <= position]
        self.fresh_as_of = max(held) if held else None
        # Unknown beyond the history kept: then at least as old as the oldest sample.
        self.lag = now - (self.fresh_as_of if held else self.samples[0][0])
        self.reachable = True


def _query(alias: str, sql: str) -> Any:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def _close(alias: str) -> None:
    with suppress(DatabaseError):  # already broken: Django opens a new one when next needed
        connections[alias].close()


@cache
def monitor() -> ReplicaMonitor:
    return ReplicaMonitor()


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def _replica_usable() -> bool:
    return (
        replica_configured()
        and not connections[DEFAULT_DB_ALIAS].in_atomic_block  # a transaction reads its writes
        and monitor().usable()
    )


def replica_reads(read: Callable[P, R]) -> Callable[P, R]:
    """Run ``read`` with its queries on the replica while it is fresh (module docstring), on
    the primary otherwise, and again on the primary if the replica fails during it.

    Only for functions that read and finish their reads before returning (no lazy QuerySet or
    unevaluated cursor may escape: it would run later, on the primary).
    """

    @wraps(read)
    def routed(*args: P.args, **kwargs: P.kwargs) -> R:
        if not _replica_usable():
            return read(*args, **kwargs)
        token = _reading_from.set(REPLICA)
        try:
            return read(*args, **kwargs)
        except DatabaseError:
            logger.warning("read on the replica failed: reading from the primary", exc_info=True)
            _close(REPLICA)
            monitor().unreachable()
        finally:
            _reading_from.reset(token)
        return read(*args, **kwargs)

    return routed
