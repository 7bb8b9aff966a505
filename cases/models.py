"""Reporters' cases and the files they reported, as hashes only (DESIGN.md sections 1, 3, 6, 7)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from hashlists.models import HashList, MediaType
from tidportal.db import TimeStampedModel, choices_check, random_readable

CASE_NUMBER_PATTERN = r"^TID-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$"


def new_case_number() -> str:
    """A random case number like TID-7K3M-Q9XP (40 bits; never derived from the row id)."""
    return f"TID-{random_readable(4)}-{random_readable(4)}"


class CaseStatus(models.TextChoices):
    RECEIVED = "received", _("Received")
    IN_REVIEW = "in_review", _("In review")
    ACCEPTED = "accepted", _("Accepted")
    NOT_ACCEPTED = "not_accepted", _("Not accepted")
    DUPLICATE = "duplicate", _("Duplicate")
    WITHDRAWN = "withdrawn", _("Withdrawn")


class CaseReporter(models.TextChoices):
    SELF = "self", _("The person pictured")
    PARENT = "parent", _("A parent or guardian")
    TRUSTED_ADULT = "trusted_adult", _("A trusted adult")


class CaseRejectionReason(models.TextChoices):
    NONE = "", _("—")
    NOT_ELIGIBLE = "not_eligible", _("Not eligible (not a minor when made)")
    NOT_EXPLICIT = "not_explicit", _("Not the kind of content this service covers")
    FEATURELESS = "featureless", _("The files cannot be fingerprinted reliably")
    MISUSE = "misuse", _("Suspected misuse of the service")
    OTHER = "other", _("Other")


class Case(TimeStampedModel):
    """One report. Holds no identifying data about the reporter: no name, IP, agent or file name."""

    Status = CaseStatus

    Reporter = CaseReporter

    RejectionReason = CaseRejectionReason

    case_number = models.CharField(
        _("case number"), max_length=13, unique=True, default=new_case_number, editable=False
    )
    # The PIN is hashed with Django's password hashers and checked in constant time.
    pin_hash = models.CharField(_("PIN hash"), max_length=256, editable=False)
    reporter = models.CharField(_("reporter"), max_length=16, choices=Reporter.choices)
    under_18_when_made = models.BooleanField(_("under 18 when made"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.RECEIVED
    )
    rejection_reason = models.CharField(
        _("reason not accepted"),
        max_length=16,
        choices=RejectionReason.choices,
        blank=True,
        default="",
    )
    duplicate_of = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="duplicates",
        verbose_name=_("duplicate of"),
    )
    hash_list = models.ForeignKey(
        HashList, on_delete=models.PROTECT, related_name="cases", verbose_name=_("hash list")
    )
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="assigned_cases",
        verbose_name=_("assigned to"),
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="decided_cases",
        verbose_name=_("decided by"),
    )
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    withdrawn_at = models.DateTimeField(_("withdrawn at"), null=True, blank=True)
    # Near-duplicate hits across cases (kept current by a task whenever files arrive), and the
    # flag raised when one case's hashes hit many unrelated cases: how misuse shows.
    near_duplicate_cases = models.PositiveIntegerField(
        _("other cases with near-duplicates"), default=0, editable=False
    )
    misuse_suspected = models.BooleanField(
        _("misuse suspected"),
        default=False,
        editable=False,
        help_text=_("Its hashes match many unrelated cases."),
    )
    # Wrong-PIN throttling, per case: wrong PINs within one window (TID_PIN_LOCKOUT_SECONDS from
    # the first of them), and a lock.
    pin_failures = models.PositiveSmallIntegerField(default=0, editable=False)
    pin_failures_since = models.DateTimeField(null=True, blank=True, editable=False)
    pin_locked_until = models.DateTimeField(null=True, blank=True, editable=False)

    history = HistoricalRecords(
        excluded_fields=[
            "pin_hash",
            "pin_failures",
            "pin_failures_since",
            "pin_locked_until",
            "near_duplicate_cases",
        ]
    )

    class Meta:
        verbose_name = _("case")
        verbose_name_plural = _("cases")
        ordering = ["-created_at"]
        constraints = [
            choices_check("status", CaseStatus, "case_status_valid"),
            choices_check("reporter", CaseReporter, "case_reporter_valid"),
            choices_check("rejection_reason", CaseRejectionReason, "case_rejection_reason_valid"),
            models.CheckConstraint(
                condition=Q(case_number__regex=CASE_NUMBER_PATTERN), name="case_number_format"
            ),
            # The service covers images of people under 18; adults are pointed elsewhere.
            models.CheckConstraint(condition=Q(under_18_when_made=True), name="case_minor_only"),
            # A case not accepted says why; only such a case has a reason.
            models.CheckConstraint(
                condition=(Q(status="not_accepted") & ~Q(rejection_reason=""))
                | (~Q(status="not_accepted") & Q(rejection_reason="")),
                name="case_rejection_reason_iff_not_accepted",
            ),
            models.CheckConstraint(
                condition=(Q(status="duplicate") & Q(duplicate_of__isnull=False))
                | (~Q(status="duplicate") & Q(duplicate_of__isnull=True)),
                name="case_duplicate_of_iff_duplicate",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="case_status_created"),
            models.Index(fields=["created_at"], name="case_created"),  # the queue's default order
            models.Index(
                fields=["near_duplicate_cases"],
                name="case_near_duplicates",
                condition=Q(near_duplicate_cases__gt=0),
            ),
            models.Index(fields=["assigned_to", "status"], name="case_assigned_status"),
        ]
        permissions = [
            ("review_case", _("Can work cases: assign, accept, reject, mark duplicate")),
            ("bulk_accept_case", _("Can accept cases in bulk")),
            ("override_case", _("Can override a decision on a case")),
        ]

    def __str__(self) -> str:
        return self.case_number


class MediaItem(models.Model):
    """One reported file, as its hashes. The file itself never reaches the server."""

    case = models.ForeignKey(
        Case, on_delete=models.PROTECT, related_name="items", verbose_name=_("case")
    )
    media_type = models.CharField(_("media type"), max_length=8, choices=MediaType.choices)
    md5 = models.CharField("MD5", max_length=32)
    pdq = models.CharField("PDQ", max_length=64, blank=True, default="")
    pdq_quality = models.PositiveSmallIntegerField(_("PDQ quality"), null=True, blank=True)
    phash = models.CharField("pHash", max_length=16, blank=True, default="")
    vpdq = models.JSONField(_("vPDQ frames"), null=True, blank=True)
    publishable = models.BooleanField(
        _("publishable"),
        default=False,
        help_text=_(
            "Whether its hashes may go on a list: an image with PDQ quality >= 50, a video "
            "with at least one frame of quality >= 50. Featureless media is kept, not published."
        ),
    )
    created_at = models.DateTimeField(_("added at"), auto_now_add=True)

    class Meta:
        verbose_name = _("media item")
        verbose_name_plural = _("media items")
        ordering = ["case", "id"]
        constraints = [
            choices_check("media_type", MediaType, "mediaitem_media_type_valid"),
            models.CheckConstraint(
                condition=Q(md5__regex=r"^[0-9a-f]{32}$"), name="mediaitem_md5_hex"
            ),
            # An image has a PDQ with quality and a pHash and no frames; a video has frames only.
            models.CheckConstraint(
                condition=(
                    Q(
                        media_type="image",
                        pdq__regex=r"^[0-9a-f]{64}$",
                        phash__regex=r"^[0-9a-f]{16}$",
                        pdq_quality__lte=100,
                        vpdq__isnull=True,
                    )
                )
                | Q(
                    media_type="video",
                    pdq="",
                    phash="",
                    pdq_quality__isnull=True,
                    vpdq__isnull=False,
                ),
                name="mediaitem_hashes_fit_media",
            ),
        ]
        indexes = [
            # Exact search by hash across cases (the staff search and duplicate detection).
            models.Index(fields=["md5"], name="mediaitem_md5"),
            models.Index(fields=["pdq"], name="mediaitem_pdq"),
            models.Index(fields=["phash"], name="mediaitem_phash"),
        ]

    def __str__(self) -> str:
        return f"{self.media_type} {self.md5}"


class CaseNote(models.Model):
    """An internal note by staff on a case. Never shown to the reporter."""

    case = models.ForeignKey(
        Case, on_delete=models.PROTECT, related_name="notes", verbose_name=_("case")
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, verbose_name=_("author")
    )
    text = models.TextField(_("note"))
    created_at = models.DateTimeField(_("written at"), auto_now_add=True)

    class Meta:
        verbose_name = _("internal note")
        verbose_name_plural = _("internal notes")
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.case} note {self.pk}"


class NearDuplicatePair(models.Model):
    """Two cases whose files are near-duplicates (same MD5, PDQ within 31, pHash within 8, or a
    vPDQ match). Stored both ways round, so each case's count is one indexed lookup."""

    case = models.ForeignKey(
        Case,
        on_delete=models.CASCADE,
        related_name="near_duplicate_pairs",
        verbose_name=_("case"),
    )
    other = models.ForeignKey(
        Case, on_delete=models.CASCADE, related_name="+", verbose_name=_("other case")
    )
    found_at = models.DateTimeField(_("found at"), auto_now_add=True)

    class Meta:
        verbose_name = _("near-duplicate pair")
        verbose_name_plural = _("near-duplicate pairs")
        constraints = [
            models.UniqueConstraint(fields=["case", "other"], name="nearduplicatepair_unique"),
            models.CheckConstraint(
                condition=~Q(case=models.F("other")), name="nearduplicatepair_distinct"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.case_id} ~ {self.other_id}"
