"""Reporters' PINs: salted PBKDF2 at the cost TID_PIN_HASH_ITERATIONS sets (cases/hashers.py)."""

from django.contrib.auth.hashers import make_password

from cases.hashers import pin_hash, pin_matches


def test_a_pin_is_stored_salted_at_the_configured_cost(settings):
    settings.TID_PIN_HASH_ITERATIONS = 1234
    first, second = pin_hash("12345678"), pin_hash("12345678")
    assert first.startswith("pbkdf2_sha256_pin$1234$") and first != second  # salted
    assert "12345678" not in first
    assert pin_matches("12345678", first) and pin_matches("12345678", second)
    assert not pin_matches("12345679", first) and not pin_matches("", first)


def test_pins_hashed_at_another_cost_or_by_djangos_default_still_open_their_case(settings):
    settings.PASSWORD_HASHERS = [
        *settings.PASSWORD_HASHERS,
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",  # as in production
    ]
    settings.TID_PIN_HASH_ITERATIONS = 500
    older = pin_hash("87654321")
    settings.TID_PIN_HASH_ITERATIONS = 2000
    assert pin_matches("87654321", older)
    django_default = make_password("87654321", hasher="pbkdf2_sha256")
    assert pin_matches("87654321", django_default)


def test_a_reported_case_keeps_only_the_pin_hash(db, default_list, image_item, settings):
    from cases.services import case_create

    case, pin = case_create(reporter="self", under_18_when_made=True, items=[image_item])
    assert case.pin_hash.startswith(f"pbkdf2_sha256_pin${settings.TID_PIN_HASH_ITERATIONS}$")
    assert pin not in case.pin_hash and pin_matches(pin, case.pin_hash)
