"""Shapes of the hash-list part of the partner API (and of its OpenAPI document)."""

from rest_framework import serializers

from hashlists.models import HashType, MediaType

# PostgreSQL's bigint: no sequence number is larger, and a larger one could not be queried.
MAX_SEQ = 2**63 - 1


class HashListSerializer(serializers.Serializer):
    slug = serializers.SlugField(help_text="The list's name in URLs, e.g. `take-it-down`.")
    name = serializers.CharField(help_text="The list's name for people.")
    description = serializers.CharField(help_text="What the list holds; may be empty.")
    last_seq = serializers.IntegerField(
        help_text="The newest sequence number on the list's change feed; 0 before the first."
    )


class ListChangesQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        min_value=0,
        max_value=MAX_SEQ,
        default=0,
        help_text="Return the changes with a seq greater than this: 0 for the whole feed, a "
        "snapshot's `seq` after loading it, or the previous page's `next`.",
    )
    limit = serializers.IntegerField(
        min_value=1,
        max_value=10_000,
        default=1_000,
        help_text="At most this many changes in the page.",
    )


class SnapshotQuerySerializer(serializers.Serializer):
    seq = serializers.IntegerField(
        min_value=0,
        max_value=MAX_SEQ,
        required=False,
        help_text="The snapshot at this seq (one of the few kept); default the newest.",
    )


class VpdqFrameSerializer(serializers.Serializer):
    """One frame of a video's vPDQ hash."""

    t = serializers.FloatField(min_value=0, help_text="Seconds from the start of the video.")
    pdq = serializers.RegexField(
        r"^[0-9a-f]{64}$", help_text="The frame's PDQ hash, 64 lowercase hex."
    )
    q = serializers.IntegerField(
        min_value=0, max_value=100, help_text="The frame's PDQ quality, 0-100."
    )


class ListChangeSerializer(serializers.Serializer):
    """One change, as the streamed feed writes it (documented here for the schema)."""

    seq = serializers.IntegerField(
        help_text="The change's place on the feed: consecutive, never reused, never reordered."
    )
    op = serializers.ChoiceField(
        choices=["add", "remove"],
        help_text="`add`: the entry is now on the list; `remove`: match against it no more.",
    )
    id = serializers.UUIDField(help_text="The entry's opaque public id; report matches against it.")
    hash_type = serializers.ChoiceField(choices=HashType.choices, help_text="The hash's type.")
    value = serializers.CharField(
        help_text="The hash, lowercase hex: md5 32, pdq 64, phash 16 characters; for vpdq, the "
        "SHA-256 of the canonical frame list, which identifies the video's entry."
    )
    media_type = serializers.ChoiceField(
        choices=MediaType.choices, help_text="What was hashed: an image or a video."
    )
    quality = serializers.IntegerField(
        allow_null=True,
        help_text="PDQ quality 0-100 (for vpdq the lowest of its frames); null for md5 and phash.",
    )
    frames = VpdqFrameSerializer(
        many=True, required=False, help_text="vpdq entries only: the video's usable frames."
    )
    at = serializers.DateTimeField(help_text="When the change was sequenced, in UTC.")


class ListChangesPageSerializer(serializers.Serializer):
    changes = ListChangeSerializer(many=True, help_text="The changes, in seq order.")
    next = serializers.IntegerField(
        help_text="Pass as `after` for the next page (the last seq in this page, or `after` "
        "itself when the page is empty)."
    )
    has_more = serializers.BooleanField(
        help_text="Whether more changes follow now; when false, poll again later with `next`."
    )


class SnapshotSerializer(serializers.Serializer):
    list = serializers.CharField(source="hash_list.slug", help_text="The list's slug.")
    seq = serializers.IntegerField(
        help_text="The snapshot holds the list as of this seq; follow the feed after it."
    )
    entry_count = serializers.IntegerField(help_text="Entries (lines) in the snapshot.")
    size_bytes = serializers.IntegerField(help_text="Size of the gzip'd file.")
    sha256 = serializers.CharField(help_text="SHA-256 of the gzip'd file, hex; also its ETag.")
    key_id = serializers.CharField(help_text="The signing key's id, as listed by GET /api/v1/keys.")
    signature = serializers.CharField(help_text="Base64 Ed25519 signature (see /api/v1/keys).")
    signed_message = serializers.CharField(
        help_text="What the signature covers, for verifiers: the lines of "
        "'tidportal-snapshot-v1', list, seq, entry_count, sha256, each ending in a newline."
    )
    created_at = serializers.DateTimeField(help_text="When the snapshot was built.")
    download_url = serializers.URLField(
        help_text="Where to download the file (the same API key is needed)."
    )


class SigningKeySerializer(serializers.Serializer):
    key_id = serializers.CharField(help_text="The key's id: snapshots name it in `key_id`.")
    algorithm = serializers.ChoiceField(choices=["Ed25519"], help_text="Always Ed25519.")
    public_key = serializers.CharField(help_text="Base64 of the raw 32-byte Ed25519 public key.")
    current = serializers.BooleanField(
        help_text="Whether new snapshots are signed with it; retired keys stay listed so that "
        "older snapshots still verify."
    )


class SigningKeysSerializer(serializers.Serializer):
    keys = SigningKeySerializer(many=True, help_text="The current key first, then retired ones.")
