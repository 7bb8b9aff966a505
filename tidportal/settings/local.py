"""The embedded default: `make run` on a laptop. SQLite and in-process tasks unless configured."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# The demo logs staff in with the printed password alone; production always asks for a TOTP code.
TID_STAFF_OTP_REQUIRED = env.bool("TID_STAFF_OTP_REQUIRED", default=False)
