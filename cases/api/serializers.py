"""Shapes of the public JSON API. Meaning (hash formats, eligibility) is checked by services."""

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from cases.models import Case
from cases.validation import MAX_ITEMS_PER_REPORT


class StrictBooleanField(serializers.BooleanField):
    """Only JSON ``true`` and ``false``: "yes", 1 or "true" are not answers to an eligibility
    question."""

    def to_internal_value(self, data: object) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


def items_field() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.DictField(),
        min_length=1,
        max_length=MAX_ITEMS_PER_REPORT,
        error_messages={
            "empty": _("Choose at least one image or video."),
            "min_length": _("Choose at least one image or video."),
            "max_length": _("At most {max_length} files can be reported at once."),
        },
    )


class PublicReportCreateSerializer(serializers.Serializer):
    reporter = serializers.ChoiceField(choices=Case.Reporter.choices)
    under_18_when_made = StrictBooleanField()
    items = items_field()


class PublicCaseAccessSerializer(serializers.Serializer):
    case_number = serializers.CharField(max_length=40, trim_whitespace=True)
    pin = serializers.CharField(max_length=40, trim_whitespace=True)


class PublicCaseItemsAddSerializer(PublicCaseAccessSerializer):
    items = items_field()


class PublicReportReceiptSerializer(serializers.Serializer):
    case_number = serializers.CharField()
    pin = serializers.CharField(help_text="Shown once; it cannot be recovered.")


class PublicTimelineEventSerializer(serializers.Serializer):
    event = serializers.CharField()
    label = serializers.CharField()
    at = serializers.DateTimeField()


class PublicCaseStatusSerializer(serializers.Serializer):
    case_number = serializers.CharField()
    status = serializers.CharField()
    status_label = serializers.CharField()
    rejection_reason = serializers.CharField(allow_null=True)
    rejection_reason_label = serializers.CharField(allow_null=True)
    timeline = PublicTimelineEventSerializer(many=True)
    platforms_matched = serializers.IntegerField()
    platforms_removed = serializers.IntegerField()
    images = serializers.IntegerField()
    videos = serializers.IntegerField()
    can_add_items = serializers.BooleanField()
    can_withdraw = serializers.BooleanField()
