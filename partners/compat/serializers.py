"""Shapes of the StopNCII-compatible API. Keys are exactly the ones python-threatexchange sends
and parses (``threatexchange.exchanges.clients.stopncii.api``), camelCase included."""

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from partners.compat import vocabulary
from partners.compat.selectors import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX
from partners.matches import MAX_BATCH

# The largest time a datetime can hold (9999-12-31T23:59:59Z): later would not be a time.
_TIMESTAMP_MAX = 253_402_300_799
_ACCEPTED_FEEDBACK = [v for v in vocabulary.FEEDBACK_VALUES if v not in vocabulary.REFUSED_FEEDBACK]


class StopNCIIFetchHashesQuerySerializer(serializers.Serializer):
    startTimestamp = serializers.IntegerField(
        min_value=0,
        max_value=_TIMESTAMP_MAX,
        default=0,
        help_text="Unix seconds: return the hashes whose state changed in this second or later. "
        "Pass the `nextSetTimestamp` of your last page; 0 (or the client's default, 10) for "
        "everything.",
    )
    pageSize = serializers.IntegerField(
        min_value=1,
        max_value=PAGE_SIZE_MAX,
        default=PAGE_SIZE_DEFAULT,
        help_text=f"Records per page, 1 to {PAGE_SIZE_MAX}.",
    )
    nextPageToken = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=4096,
        help_text="The `nextPageToken` of the previous page, to continue the same fetch. Opaque "
        "and signed: an altered token is a 400.",
    )


class StopNCIICSPFeedbackSerializer(serializers.Serializer):
    feedbackValue = serializers.ChoiceField(
        choices=["PendingReview", "Blocked", "NotBlocked"],
        help_text="Your own latest outcome on this hash: PendingReview, Blocked (removed, or "
        "restricted with the tag `restricted`) or NotBlocked (no action, or not relevant with "
        "the tag `not_relevant`).",
    )
    tags = serializers.ListField(
        child=serializers.CharField(),
        help_text="`restricted` or `not_relevant` when the outcome is one of those; else empty.",
    )
    source = serializers.CharField(
        help_text="Your own platform's name: other platforms' feedback is never shown."
    )


class StopNCIIHashRecordSerializer(serializers.Serializer):
    lastModtimestamp = serializers.IntegerField(
        source="last_modified",
        help_text="Unix seconds of the hash's latest change on the feed.",
    )
    signalType = serializers.ChoiceField(
        source="signal_type",
        choices=list(vocabulary.SIGNAL_TYPES),
        help_text="ImagePDQ (a PDQ of an image, 64 hex) or VideoMD5 (the MD5 of a video file, "
        "32 hex).",
    )
    hashValue = serializers.CharField(source="hash_value", help_text="The hash, lowercase hex.")
    hashStatus = serializers.ChoiceField(
        source="status",
        choices=[vocabulary.ACTIVE, vocabulary.WITHDRAWN],
        help_text="Active: match against it. Withdrawn: delete it (taken off every list of "
        "yours that had it).",
    )
    caseNumbers = serializers.DictField(
        source="case_numbers",
        child=serializers.ChoiceField(choices=[vocabulary.ACTIVE, vocabulary.WITHDRAWN]),
        help_text="Per list entry holding this hash, its opaque public id (the `id` of the feed, "
        "never a reporter's case number) and its status.",
    )
    CSPFeedbacks = StopNCIICSPFeedbackSerializer(
        source="feedbacks",
        many=True,
        help_text="Your own outcome on this hash, if you sent one; as of this record.",
    )


class StopNCIIFetchHashesResponseSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Records on this page.")
    nextPageToken = serializers.CharField(
        source="next_page_token",
        allow_null=True,
        help_text="Pass back to get the next page of this fetch; null on the last page.",
    )
    nextSetTimestamp = serializers.IntegerField(
        source="next_set_timestamp",
        help_text="Where to resume: store it after every page and pass it as `startTimestamp` "
        "next time. Resuming there may repeat a few records, never skips one.",
    )
    hasMoreRecords = serializers.BooleanField(
        source="has_more", help_text="True while there are more pages in this fetch."
    )
    hashRecords = StopNCIIHashRecordSerializer(
        source="records", many=True, help_text="One record per hash, in feed order."
    )


class StopNCIIHashFeedbackSerializer(serializers.Serializer):
    hashValue = serializers.RegexField(
        r"^(?:[0-9a-f]{32}|[0-9a-f]{64})$",
        help_text="A hash from FetchHashes: 64 hex for ImagePDQ, 32 hex for VideoMD5 (lowercase).",
        error_messages={
            "invalid": _("Send a hash as FetchHashes gave it: 64 or 32 lowercase hex characters.")
        },
    )
    feedbackValue = serializers.ChoiceField(
        choices=_ACCEPTED_FEEDBACK,
        help_text="Blocked: removed (restricted with the tag `restricted`). NotBlocked: no "
        "action (not relevant, a false positive or misuse, with the tag `not_relevant`). "
        "PendingReview: matched, not decided yet. None, QualityUnknown, Unknown: a match with "
        "no outcome (pending review if new, else unchanged). Withdrawn and Deleted are statuses "
        "of a hash, not outcomes: refused.",
        error_messages={
            "invalid_choice": _(
                '"{input}" is not an outcome: use Blocked, NotBlocked or PendingReview.'
            )
        },
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=100),
        max_length=50,
        default=list,
        help_text="`restricted` and `not_relevant` refine the outcome (see feedbackValue); other "
        "tags are accepted and not stored.",
    )


class StopNCIISubmitFeedbackSerializer(serializers.Serializer):
    count = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="How many feedbacks follow; when sent, it must match.",
    )
    hashFeedbacks = StopNCIIHashFeedbackSerializer(
        many=True,
        min_length=1,
        max_length=MAX_BATCH,
        help_text=f"1 to {MAX_BATCH} feedbacks, at most one per hash.",
    )

    def validate(self, attrs: dict) -> dict:
        sent = len(attrs["hashFeedbacks"])
        if "count" in attrs and attrs["count"] != sent:
            message = _("It says how many feedbacks follow: %(n)d.") % {"n": sent}
            raise serializers.ValidationError({"count": [message]})
        return attrs


class StopNCIISubmitFeedbackResponseSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Feedbacks received.")
    recorded = serializers.IntegerField(help_text="Match reports created.")
    updated = serializers.IntegerField(help_text="Match reports given a new outcome.")
    unchanged = serializers.IntegerField(
        help_text="Match reports left as they were (the same outcome again, an outcome that "
        "does not move a decided report back to pending review, or no outcome given)."
    )
