"""Settings shared by every environment.

Everything is read through django-environ. The defaults are the *embedded default*: SQLite and
in-process Celery tasks, so that `make run` works on a fresh clone with no configuration.
Setting `DATABASE_URL` and `REDIS_URL` switches to PostgreSQL and a real Redis broker and cache.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"  # local state of the embedded default (database, snapshots); not in git

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# ------------------------------------------------------------------------------------------------
# Core
# ------------------------------------------------------------------------------------------------
SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-embedded-default-do-not-use-in-production")
# Earlier keys, during a rotation: still accepted for signatures and still decrypt encrypted fields
# (tidportal/crypto.py) until `manage.py secrets_reencrypt` has run. Comma-separated.
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "tidportal.apps.StaffAdminConfig",  # django.contrib.admin with a second factor for staff
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from this origin (/api/v1/docs/)
    "simple_history",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "tidportal",
    "hashlists",
    "cases",
    "partners",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "tidportal.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "tidportal.metrics.RequestMetricsMiddleware",  # after WhiteNoise: static files not counted
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "tidportal.urls"
WSGI_APPLICATION = "tidportal.wsgi.application"
ASGI_APPLICATION = "tidportal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ------------------------------------------------------------------------------------------------
# Database: https://django-environ.readthedocs.io/en/latest/types.html#environ-env-db-url
# ------------------------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'tidportal.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite's single writer stands in for PostgreSQL's locks on the embedded default. IMMEDIATE
    # transactions take the write lock up front, so concurrent writers queue instead of failing
    # with "database is locked"; WAL lets readers go on while one writes.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DATABASES["default"]["ATOMIC_REQUESTS"] = False  # services own their transactions (STYLE.md rule 1)
# Keep connections open between requests (each new PostgreSQL connection costs milliseconds), and
# check one before reusing it so that a restarted database costs one failed check, not a 500.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# An optional PostgreSQL streaming replica for the partner reads that tolerate a few seconds' lag
# (the feed, list and snapshot metadata, FetchHashes, the lookup's index loading): see
# tidportal/db_router.py and docs/deploy.md. Without it there is one database and no router.
DATABASE_REPLICA_URL = env("DATABASE_REPLICA_URL", default="")
# Past this lag (or while it is unreachable) the replica is left alone and the primary answers.
TID_REPLICA_MAX_LAG_SECONDS = env.float("TID_REPLICA_MAX_LAG_SECONDS", default=5.0)


def replica_database(url: str, primary: dict) -> dict:
    """The ``replica`` alias for ``url``, connected like ``primary``; a test run mirrors the
    primary's test database instead (https://docs.djangoproject.com/en/5.2/topics/testing/
    advanced/#testing-primary-replica-configurations)."""
    if primary["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URL needs a PostgreSQL DATABASE_URL.")
    replica = env.db_url_config(url)
    # A replica that does not answer costs one short wait, then the primary answers.
    replica.setdefault("OPTIONS", {}).setdefault("connect_timeout", 2)
    return {
        **replica,
        "ATOMIC_REQUESTS": False,
        "CONN_MAX_AGE": primary.get("CONN_MAX_AGE", 0),
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"MIRROR": "default"},
    }


if DATABASE_REPLICA_URL:
    DATABASES["replica"] = replica_database(DATABASE_REPLICA_URL, DATABASES["default"])
    DATABASE_ROUTERS = ["tidportal.db_router.ReplicaRouter"]

# Django's own cap on a request body (2.5 MB by default, refused with an HTML page) sits just
# above the largest limit an API sets itself (the public report API's 4 MiB, answered in JSON).
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# ------------------------------------------------------------------------------------------------
# Redis: broker and cache. Absent on the embedded default.
# ------------------------------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "tidportal",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# ------------------------------------------------------------------------------------------------
# Celery: https://docs.celeryq.dev/en/stable/userguide/configuration.html
# ------------------------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None  # tasks report through the database, never through results
CELERY_TASK_IGNORE_RESULT = True
# Without a broker the tasks run in-process, synchronously, where they are queued.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
# A task is acknowledged only after it finished, and re-queued if its worker dies mid-way:
# every task is idempotent, so running one twice is safe; losing one is not.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker that loses Redis reconnects for as long as it takes (waiting 2, 4, ... up to 30 s
# between attempts) instead of exiting after Celery's default of 100 attempts: an outage of
# Redis delays work but must not need the workers restarting by hand.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Redis redelivers an unacknowledged task after this long; it must exceed the hard time limit.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TIMEZONE = "UTC"
# The database is the source of truth: beat re-runs whatever is pending, so nothing is lost
# while Redis or a worker is down (DESIGN.md section 8).
# The sequencer has a queue of its own, so that distribution never waits behind slow work
# (near-duplicate refreshes, snapshots, webhook calls). A worker started without -Q consumes both
# queues; in production one small worker runs `-Q feed` (docs/deploy.md).
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = (Queue("celery"), Queue("feed"))
CELERY_TASK_ROUTES = {"hashlists.tasks.list_changes_sequence": {"queue": "feed"}}
CELERY_BEAT_SCHEDULE = {
    "hash-list-changes-sequence": {
        "task": "hashlists.tasks.list_changes_sequence",
        "schedule": env.float("TID_SEQUENCER_INTERVAL", default=5.0),
    },
    # Webhook attempts that are due: retries, and first attempts whose task never reached Redis.
    "webhook-deliveries-due": {
        "task": "partners.tasks.webhook_deliveries_due",
        "schedule": env.float("TID_WEBHOOK_DUE_INTERVAL", default=15.0),
    },
    "hash-list-snapshots": {
        "task": "hashlists.tasks.hash_list_snapshots_due",
        "schedule": env.float("TID_SNAPSHOT_CHECK_INTERVAL", default=60.0),
    },
    # Proves beat -> broker -> worker works end to end: /healthz/worker reads its last run.
    "worker-heartbeat": {
        "task": "tidportal.tasks.worker_heartbeat",
        "schedule": env.float("TID_WORKER_HEARTBEAT_INTERVAL", default=30.0),
    },
}

# ------------------------------------------------------------------------------------------------
# Passwords and the PINs of reporters (hashed with the same hashers, checked in constant time)
# ------------------------------------------------------------------------------------------------
# Django's own hashers for staff passwords (the first hashes new ones), and the PINs' own.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "cases.hashers.PinHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# ------------------------------------------------------------------------------------------------
# Internationalisation: English and Spanish from the start.
# ------------------------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# ------------------------------------------------------------------------------------------------
# Static files and storage (snapshots live in the default storage)
# ------------------------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static")))
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # The browser's MD5 (static/tid/md5.js imports ../vendor/noble-hashes/legacy.js): the npm
    # package's ES modules served as they are, no build step. `npm ci` (make run/test) installs it.
    ("vendor/noble-hashes", BASE_DIR / "node_modules" / "@noble" / "hashes"),
]
MEDIA_ROOT = Path(env("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "storage")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Snapshots on S3-compatible storage when a bucket is configured (django-storages):
# https://django-storages.readthedocs.io/en/latest/backends/amazon-S3.html
TID_S3_BUCKET = env("TID_S3_BUCKET", default="")
if TID_S3_BUCKET:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": TID_S3_BUCKET,
            "location": env("TID_S3_PREFIX", default=""),
            "endpoint_url": env("TID_S3_ENDPOINT_URL", default=None),
            "region_name": env("TID_S3_REGION", default=None),
            "access_key": env("TID_S3_ACCESS_KEY_ID", default=None),
            "secret_key": env("TID_S3_SECRET_ACCESS_KEY", default=None),
            "default_acl": None,  # private objects; partners download through the API
            "file_overwrite": False,
        },
    }

# ------------------------------------------------------------------------------------------------
# Security headers. Production turns on the HTTPS-only parts.
# https://docs.djangoproject.com/en/5.2/ref/middleware/#module-django.middleware.security
# ------------------------------------------------------------------------------------------------
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the reporter pages' scripts read it to send JSON with the token
# The reporter site makes no third-party request: everything comes from this origin. Object URLs
# (blob:) show local thumbnails; the hashing Web Worker is a same-origin module.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob:",
        "worker-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# The Django admin still sets a few inline style attributes; staff pages get those, nothing more.
CONTENT_SECURITY_POLICY_ADMIN = CONTENT_SECURITY_POLICY.replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)
PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"
)

# ------------------------------------------------------------------------------------------------
# Django REST Framework and the OpenAPI schema
# ------------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["tidportal.api.JSONParser"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "tidportal.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        # Per anonymous client (an HMAC of its address, never the address itself).
        "public_report": env("TID_THROTTLE_PUBLIC_REPORT", default="20/hour"),
        "public_case": env("TID_THROTTLE_PUBLIC_CASE", default="60/hour"),
        # Per partner API key.
        "partner": env("TID_THROTTLE_PARTNER", default="1200/minute"),
    },
}
# The partner document at /api/v1/schema/, Swagger UI at /api/v1/docs/ (tidportal/api_docs.py).
# https://drf-spectacular.readthedocs.io/en/latest/settings.html
SPECTACULAR_SETTINGS = {
    "TITLE": "tidportal partner API",
    "DESCRIPTION": (BASE_DIR / "tidportal" / "api_description.md").read_text(),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Partner endpoints only: the reporter site's JSON API is not for partners (api_schema.py).
    "PREPROCESSING_HOOKS": ["tidportal.api_schema.partner_endpoints_only"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "tidportal.api_schema.document_response_headers",
    ],
    # Tags from the first path segment after the prefix: lists, keys, matches, lookup, stopncii.
    "SCHEMA_PATH_PREFIX": r"/api/(?:v1/|compat/)",
    "TAGS": [
        {"name": "lists", "description": "Hash lists, their change feed and signed snapshots."},
        {"name": "keys", "description": "The public keys that sign snapshots."},
        {"name": "matches", "description": "Matches found on the platform and their outcomes."},
        {"name": "lookup", "description": "Hosted lookup of hashes against the lists."},
        {
            "name": "stopncii",
            "description": "The StopNCII-compatible API, for python-threatexchange and "
            "Hasher-Matcher-Actioner configured with our base URL.",
        },
    ],
    # Separate request and response components, so read-only fields are not asked for.
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"HashTypeEnum": "hashlists.models.HashType"},
    # Swagger UI's files from drf-spectacular-sidecar, served by this origin. (Not ReDoc: it
    # injects <style> elements and starts a blob: worker, which the site's CSP refuses.)
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# ------------------------------------------------------------------------------------------------
# tidportal itself
# ------------------------------------------------------------------------------------------------
TID_DEFAULT_HASH_LIST = "take-it-down"
# Wrong PINs: one client is locked out of a case after TID_PIN_MAX_FAILURES; the case itself
# locks for everyone after TID_PIN_CASE_MAX_FAILURES from anywhere (distributed guessing). Both
# locks last TID_PIN_LOCKOUT_SECONDS, so nobody can lock a reporter out of their case for good.
TID_PIN_MAX_FAILURES = env.int("TID_PIN_MAX_FAILURES", default=5)
TID_PIN_CASE_MAX_FAILURES = env.int("TID_PIN_CASE_MAX_FAILURES", default=20)
TID_PIN_LOCKOUT_SECONDS = env.int("TID_PIN_LOCKOUT_SECONDS", default=900)
# PBKDF2 rounds for reporters' PINs (cases/hashers.py explains why not Django's million).
TID_PIN_HASH_ITERATIONS = env.int("TID_PIN_HASH_ITERATIONS", default=20_000)
# Snapshot signing (hashlists/signing.py): the Ed25519 private key as PEM text, or a PEM file;
# retired public keys (base64, raw 32 bytes) stay published so older snapshots still verify.
TID_SIGNING_KEY = env("TID_SIGNING_KEY", default="")
TID_SIGNING_KEY_FILE = env("TID_SIGNING_KEY_FILE", default=str(VAR_DIR / "signing" / "ed25519.pem"))
TID_SIGNING_PUBLIC_KEYS = env.list("TID_SIGNING_PUBLIC_KEYS", default=[])
# Snapshots: built by beat every TID_SNAPSHOT_INTERVAL seconds when the list changed, and as soon
# as TID_SNAPSHOT_CHANGES changes accumulated; the newest TID_SNAPSHOTS_KEPT are kept.
TID_SNAPSHOT_INTERVAL = env.int("TID_SNAPSHOT_INTERVAL", default=600)
TID_SNAPSHOT_CHANGES = env.int("TID_SNAPSHOT_CHANGES", default=10_000)
TID_SNAPSHOTS_KEPT = env.int("TID_SNAPSHOTS_KEPT", default=3)
# Hosted lookup (hashlists/lookup.py): a worker's in-memory index of a list catches up with the
# feed before answering when its last catch-up is older than this many seconds.
TID_LOOKUP_REFRESH_SECONDS = env.float("TID_LOOKUP_REFRESH_SECONDS", default=1.0)

# Monitoring: /healthz/worker fails after three missed heartbeats; /metrics (Prometheus) is off
# unless a token is set, and then wants "Authorization: Bearer <token>".
TID_WORKER_HEARTBEAT_INTERVAL = env.float("TID_WORKER_HEARTBEAT_INTERVAL", default=30.0)
TID_METRICS_TOKEN = env("TID_METRICS_TOKEN", default="")

# Staff log in with a second factor (TOTP) unless this is off: the demo settings turn it off.
TID_STAFF_OTP_REQUIRED = env.bool("TID_STAFF_OTP_REQUIRED", default=True)
OTP_TOTP_ISSUER = "tidportal staff"
# A case whose files are near-duplicates of this many unrelated cases is flagged for misuse.
TID_MISUSE_NEAR_DUPLICATE_CASES = env.int("TID_MISUSE_NEAR_DUPLICATE_CASES", default=5)
# Behind a reverse proxy, the request header (as in request.META) that carries the client's
# address, e.g. "HTTP_X_FORWARDED_FOR". Only used, hashed, for throttling; never stored.
TID_CLIENT_IP_HEADER = env("TID_CLIENT_IP_HEADER", default="")

# ------------------------------------------------------------------------------------------------
# Logging: never log reporter data; structured `extra=` only.
# ------------------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {
        # The development server logs each request with the client's address: reporters are
        # anonymous, so those lines are dropped (gunicorn's access log is off for the same reason).
        "django.server": {"handlers": [], "level": "ERROR", "propagate": False},
    },
}
