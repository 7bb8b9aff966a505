"""The change feed under concurrent writers (DESIGN.md section 4): a reader following it never
misses or reorders a change, and ends with exactly the list the database holds."""

import json
import random
import threading
import time

import pytest
from django.db import OperationalError, connection
from django.test import Client

from cases import services
from hashlists.models import HashEntry, ListChange
from hashlists.services import list_changes_sequence
from partners.services import api_key_create, partner_create
from tests.conftest import SUPERVISOR_PERMISSIONS, staff_with

WRITERS = 8
ROUNDS = 8
POOL = 40  # shared image hashes, so writers publish and withdraw the same entries


def pool_item(n):
    return {
        "media_type": "image",
        "md5": f"{n + 1:032x}",
        "pdq": f"{n + 1:04x}" + "a5" * 30,
        "pdq_quality": 90,
        "phash": f"{n + 1:04x}0ff00ff0ff0f",
    }


@pytest.mark.django_db(transaction=True)
def test_a_reader_following_the_feed_ends_with_the_databases_list(default_list, django_user_model):
    supervisor = staff_with(django_user_model, "sup", *SUPERVISOR_PERMISSIONS)
    partner = partner_create(name="Reader", readable_lists=[default_list])
    _key, raw = api_key_create(partner=partner, name="feed", scopes=["lists:read"])
    errors: list[BaseException] = []
    writers_done = threading.Event()
    seen: list[int] = []
    state: dict[str, str] = {}

    def writer(n):
        rng = random.Random(n)
        mine = []
        try:
            for _ in range(ROUNDS):
                roll = rng.random()
                if mine and roll < 0.35:
                    services.case_withdraw(case=mine.pop(rng.randrange(len(mine))))
                else:
                    items = [pool_item(i) for i in rng.sample(range(POOL), rng.randint(1, 3))]
                    case, _pin = services.case_create(
                        reporter="self", under_18_when_made=True, items=items
                    )
                    for attempt in range(5):
                        try:
                            services.case_accept(case=case, staff=supervisor)
                            break
                        except OperationalError:  # a deadlock victim: try again, as a task would
                            time.sleep(0.05 * (attempt + 1))
                    mine.append(case)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    def reader():
        client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
        after = 0
        try:
            while True:
                finished = writers_done.is_set()
                response = client.get(
                    "/api/v1/lists/take-it-down/changes", {"after": after, "limit": 7}
                )
                page = json.loads(b"".join(response.streaming_content))
                for change in page["changes"]:
                    seen.append(change["seq"])
                    if change["op"] == "add":
                        state[change["id"]] = change["value"]
                    else:
                        state.pop(change["id"], None)
                after = page["next"]
                if finished and not page["has_more"]:
                    return
                if not page["changes"]:
                    time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    follower = threading.Thread(target=reader)
    follower.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    list_changes_sequence()  # anything committed after the last writer's own sequencing
    writers_done.set()
    follower.join(timeout=120)
    assert errors == []
    total = ListChange.objects.count()
    assert total > WRITERS * ROUNDS  # there was real traffic
    assert seen == list(range(1, total + 1))  # nothing skipped, repeated or reordered
    active = {
        str(pk): v
        for pk, v in HashEntry.objects.filter(status="active").values_list("public_id", "value")
    }
    assert state == active
