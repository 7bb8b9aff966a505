"""How reporters' PINs are stored: PBKDF2-SHA256 with a per-PIN salt, at a cost of its own.

A PIN is eight digits, about 27 bits. No per-request cost keeps a stolen PIN hash safe from
offline guessing (a GPU tries all 10^8 PINs under Django's million PBKDF2 rounds within hours),
so the PIN's protection is online: the per-client and per-case lockouts in
cases.services.case_access_for_reporter. What the rounds buy offline is small, while their cost
is paid on every report and every status check: at Django's default (1,000,000 rounds, about
200 ms of a core) two cores serve about ten reporters a second, and fifty at once wait seconds
(bench/load/reporters.py). TID_PIN_HASH_ITERATIONS (default 20,000, about 4 ms) keeps a stolen
hash from being free to reverse without making reporters wait. Staff passwords keep Django's own
hasher. Hashes made with other settings, or with Django's default, still verify.
"""

from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher, check_password, make_password


class PinHasher(PBKDF2PasswordHasher):
    algorithm = "pbkdf2_sha256_pin"

    @property
    def iterations(self) -> int:  # type: ignore[override]
        return settings.TID_PIN_HASH_ITERATIONS


def pin_hash(pin: str) -> str:
    return make_password(pin, hasher=PinHasher.algorithm)


def pin_matches(pin: str, encoded: str) -> bool:
    """Constant-time, whichever hasher made ``encoded``."""
    return check_password(pin, encoded)
