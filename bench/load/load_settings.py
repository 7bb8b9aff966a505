"""Production settings with PBKDF2 at BENCH_PIN_ITERATIONS iterations for PINs (and passwords):
what the reporter path costs apart from the PIN hash (reporters.py and soak.py --pin-iterations).

Django 5.2's default, 1,000,000 iterations, takes about 200 ms of one core here for each report
(the PIN is hashed) and each status check (it is verified): on 2 cores that alone caps the
reporter site near 10 such requests a second.
"""

from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tidportal.settings.base import env
from tidportal.settings.production import *  # noqa: F403


class BenchPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """The same algorithm and encoding (pbkdf2_sha256$iterations$salt$hash), fewer rounds."""

    iterations = env.int("BENCH_PIN_ITERATIONS")


PASSWORD_HASHERS = ["load_settings.BenchPBKDF2PasswordHasher"]
