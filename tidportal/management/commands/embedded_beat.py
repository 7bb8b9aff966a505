"""Run Celery beat's schedule in-process, for the embedded default (no broker).

Production runs `celery beat` against Redis. Without a broker, tasks run eagerly where they are
queued, so this loop stands in for beat: it runs each scheduled task in this process at its
interval. Every scheduled task is idempotent, so a late or repeated run is harmless.
"""

import logging
import time
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.management.base import BaseCommand

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the Celery beat schedule in this process (embedded default only)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="Run every task once and exit.")

    def handle(self, *args: Any, once: bool = False, **options: Any) -> None:
        current_app.loader.import_default_modules()
        schedule = {
            name: (entry["task"], _seconds(entry["schedule"]))
            for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
        }
        due = dict.fromkeys(schedule, 0.0)
        self.stdout.write(f"embedded beat: {len(schedule)} scheduled task(s)")
        while True:
            now = time.monotonic()
            for name, (task_name, interval) in schedule.items():
                if now >= due[name]:
                    due[name] = now + interval
                    try:
                        current_app.tasks[task_name].apply(throw=True)
                    except Exception:
                        logger.exception("scheduled task failed", extra={"task": task_name})
            if once:
                return
            time.sleep(max(0.1, min(due.values()) - time.monotonic()))


def _seconds(schedule: Any) -> float:
    if isinstance(schedule, int | float):
        return float(schedule)
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    return float(schedule.run_every.total_seconds())
