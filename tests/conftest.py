from pathlib import Path

import pytest

from tests import corpus


@pytest.fixture(scope="session", autouse=True)
def _signing_key(django_db_blocker):
    """A development signing key for this run (test settings point at a scratch path)."""
    from django.core.management import call_command

    call_command("signing_key_generate", "--if-missing", verbosity=0)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttles and PIN lockouts live in the cache (Redis): each test starts with none."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(scope="session")
def photo_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[corpus.CorpusFile]:
    return corpus.build(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def default_list(db):  # noqa: ANN001, ANN201
    from hashlists.models import HashList

    # Created by a data migration; transactional tests flush it, so make it again if needed.
    hash_list, _ = HashList.objects.get_or_create(
        slug="take-it-down", defaults={"name": "Take It Down", "published": True}
    )
    return hash_list


def staff_with(django_user_model, username, *permissions):  # noqa: ANN001, ANN201
    """A staff user holding ``permissions`` directly (the groups come from a data migration,
    which transactional tests flush)."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username=username, password="pw", is_staff=True)
    for dotted in permissions:
        app_label, codename = dotted.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return django_user_model.objects.get(pk=user.pk)  # fresh: no stale permission cache


REVIEWER_PERMISSIONS = (
    "cases.view_case",
    "cases.change_case",
    "cases.review_case",
    "cases.add_casenote",
    "cases.view_casenote",
)
SUPERVISOR_PERMISSIONS = (
    *REVIEWER_PERMISSIONS,
    "cases.bulk_accept_case",
    "cases.override_case",
    "hashlists.change_hashentry",
    "hashlists.view_hashentry",
)


@pytest.fixture
def reviewer(db, django_user_model):  # noqa: ANN001, ANN201
    return staff_with(django_user_model, "reviewer", *REVIEWER_PERMISSIONS)


@pytest.fixture
def staff_user(db, django_user_model):  # noqa: ANN001, ANN201
    """A supervisor: may do everything in the case workflow."""
    return staff_with(django_user_model, "supervisor", *SUPERVISOR_PERMISSIONS)


@pytest.fixture
def partner(db, default_list):  # noqa: ANN001, ANN201
    from partners.services import partner_create

    return partner_create(name="Example Platform", readable_lists=[default_list])


@pytest.fixture
def image_item() -> dict:
    """A valid reported image, as the browser's hashFile returns it."""
    from tidkit.hashing import hash_image

    return hash_image(corpus.encode(corpus.photo("astronaut.png"), "PNG"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path).parent.name == "integration":
            item.add_marker(pytest.mark.integration)
        if Path(item.path).parent.name == "browser":
            item.add_marker(pytest.mark.browser)
