"""The embedded default: `make run` on a laptop. SQLite and in-process tasks unless configured."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
