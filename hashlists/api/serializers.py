"""Shapes of the hash-list part of the partner API."""

from rest_framework import serializers


class HashListSerializer(serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()
    description = serializers.CharField()
    last_seq = serializers.IntegerField(help_text="The newest sequence number on the feed.")


class ListChangesQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        min_value=0, default=0, help_text="Return changes with seq greater than this."
    )
    limit = serializers.IntegerField(min_value=1, max_value=10_000, default=1_000)


class ListChangeSerializer(serializers.Serializer):
    """One change, as the streamed feed writes it (documented here for the schema)."""

    seq = serializers.IntegerField()
    op = serializers.ChoiceField(choices=["add", "remove"])
    id = serializers.UUIDField(help_text="The entry's opaque public id.")
    hash_type = serializers.ChoiceField(choices=["md5", "pdq", "phash", "vpdq"])
    value = serializers.CharField()
    media_type = serializers.ChoiceField(choices=["image", "video"])
    quality = serializers.IntegerField(allow_null=True)
    frames = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="vPDQ entries only: [{t, pdq, q}]."
    )
    at = serializers.DateTimeField()


class ListChangesPageSerializer(serializers.Serializer):
    changes = ListChangeSerializer(many=True)
    next = serializers.IntegerField(help_text="Pass as `after` for the next page.")
    has_more = serializers.BooleanField()


class SnapshotSerializer(serializers.Serializer):
    list = serializers.CharField(source="hash_list.slug")
    seq = serializers.IntegerField()
    entry_count = serializers.IntegerField()
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    key_id = serializers.CharField()
    signature = serializers.CharField(help_text="Base64 Ed25519 signature (see /api/v1/keys).")
    signed_message = serializers.CharField(
        help_text="What the signature covers, for verifiers: the lines of "
        "'tidportal-snapshot-v1', list, seq, entry_count, sha256, each ending in a newline."
    )
    created_at = serializers.DateTimeField()
    download_url = serializers.CharField()


class SigningKeySerializer(serializers.Serializer):
    key_id = serializers.CharField()
    algorithm = serializers.CharField()
    public_key = serializers.CharField(help_text="Base64 of the raw 32-byte Ed25519 public key.")
    current = serializers.BooleanField()
