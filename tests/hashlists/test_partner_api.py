"""The hash-list partner API: authentication, scoping, the feed and signed snapshots."""

import base64
import gzip
import hashlib
import json
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone

from cases.services import case_accept, case_create, case_withdraw
from hashlists import signing
from hashlists.models import HashList, ListChange, Snapshot
from hashlists.services import list_changes_sequence
from hashlists.snapshots import hash_list_snapshot_build
from partners.api.authentication import PartnerKeyThrottle
from partners.models import Partner
from partners.services import api_key_create, partner_create
from tests.helpers import accepted_case
from tests.helpers import numbered_image as image


@pytest.fixture
def key(partner):
    return api_key_create(partner=partner, name="sync", scopes=["lists:read"])[1]


@pytest.fixture
def api(key):
    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


@pytest.fixture
def listed(db, default_list, staff_user):
    return [accepted_case(staff_user, [image(n)])[0] for n in range(1, 4)]


def feed(api, slug="take-it-down", **params):
    response = api.get(f"/api/v1/lists/{slug}/changes", params)
    assert response.status_code == 200, response.content
    return json.loads(b"".join(response.streaming_content))


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("Token abc", 401),
        ("Bearer ", 401),
        ("Bearer tid_unknownprefx_secretsecretsecret", 401),
        ("Bearer not-a-key", 401),
    ],
)
def test_requests_without_a_valid_key_get_401(db, header, status):
    client = Client()
    kwargs = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/api/v1/lists/", **kwargs)
    assert response.status_code == status
    assert response.json()["error"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_and_expired_keys_get_401_and_a_suspended_partner_403(partner, key):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/lists/").status_code == 200
    Partner.objects.filter(pk=partner.pk).update(status="suspended")
    suspended = client.get("/api/v1/lists/")
    assert suspended.status_code == 403 and "suspended" in suspended.json()["detail"]
    Partner.objects.filter(pk=partner.pk).update(status="active")
    expiring, raw = api_key_create(
        partner=partner,
        name="e",
        scopes=["lists:read"],
        expires_at=timezone.now() + timedelta(hours=1),
    )
    assert Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/lists/").status_code == 200
    expiring.expires_at = timezone.now() - timedelta(seconds=1)
    expiring.save()
    assert Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/lists/").status_code == 401
    partner.api_keys.update(revoked_at=timezone.now())
    assert client.get("/api/v1/lists/").status_code == 401


def test_a_key_without_the_read_scope_gets_403(partner):
    _key, raw = api_key_create(partner=partner, name="w", scopes=["matches:write"])
    response = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/lists/")
    assert response.status_code == 403 and "lists:read" in response.json()["detail"]


def test_a_list_not_granted_is_the_same_404_as_one_that_does_not_exist(api, db, listed):
    HashList.objects.create(slug="secret", name="Not yours", published=True)
    not_granted = api.get("/api/v1/lists/secret/changes")
    missing = api.get("/api/v1/lists/nope/changes")
    assert not_granted.status_code == missing.status_code == 404
    assert not_granted.json() == missing.json()
    assert [item["slug"] for item in api.get("/api/v1/lists/").json()] == ["take-it-down"]


def test_each_key_is_throttled_with_retry_after(api, db, monkeypatch):
    monkeypatch.setattr(PartnerKeyThrottle, "rate", "3/minute", raising=False)
    codes = [api.get("/api/v1/lists/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert int(api.get("/api/v1/lists/")["Retry-After"]) > 0


def test_last_used_is_kept_without_a_write_per_request(api, partner, django_assert_num_queries):
    api.get("/api/v1/lists/")
    assert partner.api_keys.get().last_used_at is not None
    with django_assert_num_queries(2):  # the key, the lists: no UPDATE this time
        api.get("/api/v1/lists/")


def test_the_feed_pages_by_seq_and_hides_unsequenced_changes(api, listed, staff_user):
    everything = feed(api, after=0, limit=10_000)
    assert [c["seq"] for c in everything["changes"]] == list(range(1, 10))
    assert everything["next"] == 9 and everything["has_more"] is False
    first = feed(api, after=0, limit=4)
    second = feed(api, after=first["next"], limit=4)
    assert first["has_more"] and [c["seq"] for c in second["changes"]] == [5, 6, 7, 8]
    change = everything["changes"][0]
    assert set(change) == {"seq", "op", "id", "hash_type", "value", "media_type", "quality", "at"}
    # Written but not yet sequenced: invisible until the sequencer numbers it.
    case_create(reporter="self", under_18_when_made=True, items=[image(99)])
    case = case_create(reporter="self", under_18_when_made=True, items=[image(98)])[0]
    case_accept(case=case, staff=staff_user)
    assert feed(api, after=9)["changes"] == []
    list_changes_sequence()
    assert [c["seq"] for c in feed(api, after=9)["changes"]] == [10, 11, 12]


@pytest.mark.parametrize("params", [{"limit": 10_001}, {"limit": 0}, {"after": -1}, {"after": "x"}])
def test_bad_feed_parameters_are_400_with_field_messages(api, listed, params):
    response = api.get("/api/v1/lists/take-it-down/changes", params)
    assert response.status_code == 400 and set(response.json()["fields"]) <= {"limit", "after"}


def test_the_feed_is_gzipped_when_asked(api, listed):
    response = api.get("/api/v1/lists/take-it-down/changes", HTTP_ACCEPT_ENCODING="gzip")
    assert response["Content-Encoding"] == "gzip"
    body = json.loads(gzip.decompress(b"".join(response.streaming_content)))
    assert len(body["changes"]) == 9


def test_withdrawal_appears_in_the_feed_as_removals(api, db, default_list, staff_user):
    case, _ = accepted_case(staff_user, [image(5)])
    case_withdraw(case=case)
    list_changes_sequence()
    ops = [(c["op"], c["hash_type"]) for c in feed(api)["changes"]]
    assert ops[-3:] == [("remove", "md5"), ("remove", "pdq"), ("remove", "phash")]


def download(api, meta):
    response = api.get(meta["download_url"].split("testserver")[1])
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def test_a_snapshot_is_the_list_at_its_seq_signed_and_verifiable(api, listed, staff_user):
    case_withdraw(case=listed[0])
    list_changes_sequence()
    snapshot = hash_list_snapshot_build(hash_list=HashList.objects.get(slug="take-it-down"))
    later, _ = accepted_case(staff_user, [image(50)])  # after the snapshot: not in it
    meta = api.get("/api/v1/lists/take-it-down/snapshot").json()
    assert meta["seq"] == snapshot.seq == 12 and meta["entry_count"] == 6
    data = download(api, meta)
    assert hashlib.sha256(data).hexdigest() == meta["sha256"] and len(data) == meta["size_bytes"]
    rows = [json.loads(line) for line in gzip.decompress(data).splitlines()]
    assert len(rows) == 6 and all(r["hash_type"] in {"md5", "pdq", "phash"} for r in rows)
    assert not {r["value"] for r in rows} & {f"{1:032x}", f"{50:032x}"}
    keys = {k["key_id"]: k for k in Client().get("/api/v1/keys").json()["keys"]}
    public = base64.b64decode(keys[meta["key_id"]]["public_key"])
    check = {"list_slug": "take-it-down", "seq": meta["seq"], "count": meta["entry_count"]}
    signature = base64.b64decode(meta["signature"])
    assert signing.verify_snapshot(
        public_key=public, signature=signature, sha256=hashlib.sha256(data).hexdigest(), **check
    )
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0x01
    assert not signing.verify_snapshot(
        public_key=public, signature=signature, sha256=hashlib.sha256(tampered).hexdigest(), **check
    )
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    stranger = Ed25519PrivateKey.generate()
    forged = stranger.sign(signing.snapshot_message(sha256=meta["sha256"], **check))
    assert not signing.verify_snapshot(
        public_key=public, signature=forged, sha256=meta["sha256"], **check
    )


def test_loading_a_snapshot_then_following_the_feed_gives_the_current_list(api, listed, staff_user):
    snapshot = hash_list_snapshot_build(hash_list=HashList.objects.get(slug="take-it-down"))
    case_withdraw(case=listed[1])
    accepted_case(staff_user, [image(60)])
    list_changes_sequence()
    meta = api.get("/api/v1/lists/take-it-down/snapshot").json()
    state = {r["id"]: r for r in map(json.loads, gzip.decompress(download(api, meta)).splitlines())}
    for change in feed(api, after=snapshot.seq)["changes"]:
        if change["op"] == "add":
            state[change["id"]] = change
        else:
            state.pop(change["id"], None)
    from hashlists.models import HashEntry

    active = {
        str(i)
        for i in HashEntry.objects.filter(status="active").values_list("public_id", flat=True)
    }
    assert set(state) == active


def test_snapshot_metadata_supports_etags_and_old_ones_are_pruned(
    api, listed, staff_user, settings
):
    settings.TID_SNAPSHOTS_KEPT = 2
    hash_list = HashList.objects.get(slug="take-it-down")
    first = hash_list_snapshot_build(hash_list=hash_list)
    assert hash_list_snapshot_build(hash_list=hash_list) == first  # idempotent at the same seq
    for n in (70, 71):
        accepted_case(staff_user, [image(n)])
        latest = hash_list_snapshot_build(hash_list=hash_list)
    assert list(Snapshot.objects.values_list("seq", flat=True).order_by("seq")) == [12, 15]
    assert not default_storage.exists(first.file.name)
    response = api.get("/api/v1/lists/take-it-down/snapshot")
    assert response["ETag"] == f'"{latest.sha256}"'
    again = api.get("/api/v1/lists/take-it-down/snapshot", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304


def test_no_snapshot_yet_is_a_404(api, db, default_list):
    response = api.get("/api/v1/lists/take-it-down/snapshot")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_the_signing_keys_are_public(db):
    body = Client().get("/api/v1/keys").json()
    assert body["keys"][0]["current"] and body["keys"][0]["algorithm"] == "Ed25519"
    assert len(base64.b64decode(body["keys"][0]["public_key"])) == 32


def test_another_partner_reads_only_its_own_lists(db, listed):
    other = partner_create(name="Other")
    _key, raw = api_key_create(partner=other, name="k", scopes=["lists:read"])
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/lists/").json() == []
    assert client.get("/api/v1/lists/take-it-down/changes").status_code == 404
    assert ListChange.objects.count() == 9
