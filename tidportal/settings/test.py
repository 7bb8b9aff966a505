"""The test suite: real PostgreSQL and Redis at their local default addresses.

Unit tests run queued tasks in-process (`CELERY_TASK_ALWAYS_EAGER`) so that a service test sees
its side effects; the integration tests in tests/integration start a real worker process against
Redis and switch eager mode off for themselves.
"""

import os
import tempfile
from pathlib import Path

from .base import *  # noqa: F403
from .base import DATABASE_REPLICA_URL, env, replica_database

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/tidportal"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Several suites may run side by side on one machine: each can name its own test database.
DATABASES["default"]["TEST"] = {"NAME": env("TID_TEST_DATABASE", default="test_tidportal")}
# Processes started by tests against a private primary and its streaming replica
# (tests/integration/test_replica.py) read the replica as production does.
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = replica_database(DATABASE_REPLICA_URL, DATABASES["default"])
# The broker and the cache get databases of their own, so clearing one leaves the other alone.
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/15")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env("REDIS_CACHE_URL", default="redis://127.0.0.1:6379/14"),
        "KEY_PREFIX": "tidportal-test",
    }
}
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)

SECRET_KEY = "test-only-secret-key"  # noqa: S105
PASSWORD_HASHERS = [
    # Fast hashing keeps the suite quick; production uses Django's default PBKDF2.
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "cases.hashers.PinHasher",
]
TID_PIN_HASH_ITERATIONS = 100

# Most admin tests log staff in directly; tests/test_staff_otp.py turns the second factor on.
TID_STAFF_OTP_REQUIRED = False

# Scratch state of a test run (a throwaway signing key made by tests/conftest.py, snapshot files),
# shared with the worker processes the integration tests start. Never committed.
SCRATCH = Path(tempfile.gettempdir()) / f"tidportal-test-{os.getuid()}"
TID_SIGNING_KEY = ""
TID_SIGNING_KEY_FILE = env("TID_SIGNING_KEY_FILE", default=str(SCRATCH / "signing" / "ed25519.pem"))
MEDIA_ROOT = Path(env("DJANGO_MEDIA_ROOT", default=str(SCRATCH / "storage")))
