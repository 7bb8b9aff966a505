"""Snapshots on S3-compatible storage (django-storages), against a local S3 server (moto)."""

import gzip
import hashlib
import json
import socket

import boto3
import pytest
from django.test import Client
from moto.server import ThreadedMotoServer

from cases.services import case_accept, case_create
from hashlists.models import HashList
from hashlists.services import list_changes_sequence
from hashlists.snapshots import hash_list_snapshot_build
from partners.services import api_key_create

CREDENTIALS = {"access_key": "test", "secret_key": "test", "region_name": "us-east-1"}


@pytest.fixture
def s3(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket="tid-snapshots")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "tid-snapshots",
                "endpoint_url": endpoint,
                "default_acl": None,
                "file_overwrite": False,
                **CREDENTIALS,
            },
        },
    }
    yield client
    server.stop()


def test_snapshots_are_stored_in_the_bucket_and_served_from_it(
    s3, default_list, partner, staff_user, image_item
):
    case, _ = case_create(reporter="self", under_18_when_made=True, items=[image_item])
    case_accept(case=case, staff=staff_user)
    list_changes_sequence()
    snapshot = hash_list_snapshot_build(hash_list=HashList.objects.get(slug="take-it-down"))
    stored = s3.get_object(Bucket="tid-snapshots", Key=snapshot.file.name)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == snapshot.sha256
    _key, raw = api_key_create(partner=partner, name="k", scopes=["lists:read"])
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    meta = client.get("/api/v1/lists/take-it-down/snapshot").json()
    body = b"".join(client.get(meta["download_url"].split("testserver")[1]).streaming_content)
    assert body == stored
    rows = [json.loads(line) for line in gzip.decompress(body).splitlines()]
    assert {r["hash_type"] for r in rows} == {"md5", "pdq", "phash"}
