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
    def publish() -> None:
        try:
            task.apply_async(kwargs=kwargs, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
        except Exception:  # noqa: BLE001 - any broker failure: beat will catch up
            logger.warning(
                "task not queued; beat will run it", extra={"task": task.name}, exc_info=True
            )

    transaction.on_commit(publish, robust=True)
