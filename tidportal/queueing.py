"""Queue a Celery task once the current transaction commits, without ever failing the write.

The database is the source of truth (DESIGN.md section 8): a task queued here is a shortcut that
makes work happen within seconds, and beat re-runs whatever is still pending. So when Redis is
down, the write that queued the task must still succeed and answer at once: publishing is tried
briefly, a failure is logged, and beat picks the work up later.
"""

import logging
from typing import Any

from celery import Task
from django.db import transaction

logger = logging.getLogger(__name__)

# Give up publishing after ~1 s instead of kombu's default of retrying for a long time.
PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0.1,
    "interval_step": 0.3,
    "interval_max": 0.5,
}


def queue_after_commit(task: Task, **kwargs: Any) -> None:
    """Queue ``task`` with ``kwargs`` once the current transaction commits (at once outside
    one). Queued once per transaction: a transaction recording three changes of a list queues
    the sequencer once, not three times (which, with Redis down, cost a second of publish
    retries each)."""
    key = (task.name, tuple(sorted(kwargs.items())))
    if _already_queued(key):
        return

    def publish() -> None:
        publish.published = True  # type: ignore[attr-defined]
        try:
            task.apply_async(kwargs=kwargs, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
        except Exception:  # noqa: BLE001 - any broker failure: beat will catch up
            logger.warning(
                "task not queued; beat will run it", extra={"task": task.name}, exc_info=True
            )

    publish.queued_key, publish.published = key, False  # type: ignore[attr-defined]
    transaction.on_commit(publish, robust=True)


def _already_queued(key: tuple) -> bool:
    """Whether this transaction already holds a publish of ``key`` (in Django's list of pending
    callbacks, ``run_on_commit``: (savepoint ids, callback, robust)). Skipping a second one is
    safe: the first is discarded only by a rollback of a savepoint it was registered in, and
    any such savepoint still open now would discard the second too (one that was released can
    no longer be rolled back alone; one rolled back already took the first with it)."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        return False
    # (``published``: the test harness runs callbacks early and leaves them in the list.)
    return any(
        getattr(callback, "queued_key", None) == key and not callback.published
        for _savepoints, callback, _robust in getattr(connection, "run_on_commit", ())
    )
