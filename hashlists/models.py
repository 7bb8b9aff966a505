"""Hash lists, their entries, the change feed and signed snapshots (DESIGN.md section 4)."""

import uuid

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from tidportal.db import TimeStampedModel, choices_check


class HashType(models.TextChoices):
    MD5 = "md5", "MD5"
    PDQ = "pdq", "PDQ"
    PHASH = "phash", "pHash"
    VPDQ = "vpdq", "vPDQ"


class MediaType(models.TextChoices):
    IMAGE = "image", _("Image")
    VIDEO = "video", _("Video")


# Canonical forms (tidkit.formats): lowercase hex of a fixed length. A vPDQ entry's value is the
# SHA-256 of its canonical frame list, so that one video is one entry; the frames travel beside it.
HASH_VALUE_PATTERNS = {
    HashType.MD5: r"^[0-9a-f]{32}$",
    HashType.PDQ: r"^[0-9a-f]{64}$",
    HashType.PHASH: r"^[0-9a-f]{16}$",
    HashType.VPDQ: r"^[0-9a-f]{64}$",
}


def hash_value_check(*, type_field: str, value_field: str, name: str) -> models.CheckConstraint:
    condition = Q()
    for hash_type, pattern in HASH_VALUE_PATTERNS.items():
        condition |= Q(**{type_field: hash_type, f"{value_field}__regex": pattern})
    return models.CheckConstraint(condition=condition, name=name)


class HashList(TimeStampedModel):
    slug = models.SlugField(_("slug"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    published = models.BooleanField(
        _("published"), default=False, help_text=_("Partners granted this list can read it.")
    )

    class Meta:
        verbose_name = _("hash list")
        verbose_name_plural = _("hash lists")
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class HashEntryStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    REMOVED = "removed", _("Removed")


class HashEntryRemovalReason(models.TextChoices):
    NONE = "", _("—")
    WITHDRAWN = "withdrawn", _("Every backing case was withdrawn")
    NO_BACKING_CASE = "no_backing_case", _("No accepted case backs it any more")
    STAFF = "staff", _("Removed by staff")
    FALSE_POSITIVE = "false_positive", _("False positive reported")
    MISUSE = "misuse", _("Misuse of the service")


class HashEntry(TimeStampedModel):
    Status = HashEntryStatus

    RemovalReason = HashEntryRemovalReason

    public_id = models.UUIDField(
        _("public id"),
        default=uuid.uuid4,
        unique=True,
        editable=False,
        help_text=_("Opaque, random id that partners see. Never sequential."),
    )
    hash_list = models.ForeignKey(
        HashList, on_delete=models.PROTECT, related_name="entries", verbose_name=_("hash list")
    )
    hash_type = models.CharField(_("hash type"), max_length=8, choices=HashType.choices)
    value = models.CharField(_("value"), max_length=64)
    frames = models.JSONField(
        _("vPDQ frames"), null=True, blank=True, help_text=_("Only for vpdq entries.")
    )
    media_type = models.CharField(_("media type"), max_length=8, choices=MediaType.choices)
    quality = models.PositiveSmallIntegerField(_("quality"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE
    )
    removal_reason = models.CharField(
        _("removal reason"), max_length=20, choices=RemovalReason.choices, blank=True, default=""
    )
    removal_note = models.TextField(_("removal note"), blank=True)
    backing_case_count = models.PositiveIntegerField(
        _("accepted cases backing it"), default=0, editable=False
    )
    flagged_at = models.DateTimeField(
        _("flagged for review at"),
        null=True,
        blank=True,
        help_text=_("Set when distinct partners report matches on it as not relevant."),
    )

    history = HistoricalRecords()

    class Meta:
        verbose_name = _("hash entry")
        verbose_name_plural = _("hash entries")
        constraints = [
            models.UniqueConstraint(
                fields=["hash_list", "hash_type", "value"], name="hashentry_unique_per_list"
            ),
            choices_check("status", HashEntryStatus, "hashentry_status_valid"),
            choices_check(
                "removal_reason", HashEntryRemovalReason, "hashentry_removal_reason_valid"
            ),
            choices_check("hash_type", HashType, "hashentry_hash_type_valid"),
            choices_check("media_type", MediaType, "hashentry_media_type_valid"),
            hash_value_check(
                type_field="hash_type", value_field="value", name="hashentry_value_format"
            ),
            models.CheckConstraint(
                condition=Q(quality__isnull=True) | Q(quality__lte=100),
                name="hashentry_quality_range",
            ),
            # vPDQ entries carry their frames; no other type does.
            models.CheckConstraint(
                condition=(Q(hash_type=HashType.VPDQ) & Q(frames__isnull=False))
                | (~Q(hash_type=HashType.VPDQ) & Q(frames__isnull=True)),
                name="hashentry_frames_only_vpdq",
            ),
            # Perceptual hashes are images; vPDQ is video; MD5 is either.
            models.CheckConstraint(
                condition=Q(hash_type__in=[HashType.MD5])
                | Q(hash_type__in=[HashType.PDQ, HashType.PHASH], media_type=MediaType.IMAGE)
                | Q(hash_type=HashType.VPDQ, media_type=MediaType.VIDEO),
                name="hashentry_type_fits_media",
            ),
            # A removed entry says why; an active one has no removal reason.
            models.CheckConstraint(
                condition=(Q(status="active") & Q(removal_reason=""))
                | (Q(status="removed") & ~Q(removal_reason="")),
                name="hashentry_removal_reason_iff_removed",
            ),
        ]
        indexes = [
            models.Index(fields=["hash_type", "value"], name="hashentry_type_value"),
            models.Index(fields=["hash_list", "status"], name="hashentry_list_status"),
            models.Index(
                fields=["flagged_at"],
                name="hashentry_flagged",
                condition=Q(flagged_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.hash_type}:{self.value[:16]}…"
            if len(self.value) > 16
            else f"{self.hash_type}:{self.value}"
        )


class HashEntrySource(models.Model):
    """Which reported file put a hash on a list. An entry stays active while at least one case
    backs it through a source that has not been withdrawn. Sources are never deleted: they are
    the record of why a hash was on the list."""

    entry = models.ForeignKey(
        HashEntry, on_delete=models.PROTECT, related_name="sources", verbose_name=_("hash entry")
    )
    media_item = models.ForeignKey(
        "cases.MediaItem",
        on_delete=models.PROTECT,
        related_name="entry_sources",
        verbose_name=_("media item"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    withdrawn_at = models.DateTimeField(
        _("no longer backing since"),
        null=True,
        blank=True,
        help_text=_("Set when its case was withdrawn or its acceptance overturned."),
    )

    class Meta:
        verbose_name = _("hash entry source")
        verbose_name_plural = _("hash entry sources")
        constraints = [
            models.UniqueConstraint(fields=["entry", "media_item"], name="hashentrysource_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.entry_id} <- item {self.media_item_id}"


class ListChangeOp(models.TextChoices):
    ADD = "add", _("Add")
    REMOVE = "remove", _("Remove")


class ListChange(models.Model):
    """One add or remove on a list's feed.

    Writers insert rows with ``seq = NULL`` inside their own transaction (an outbox); a single
    sequencer assigns consecutive seqs to committed rows, and readers only see sequenced rows,
    so a reader following ``after=<seq>`` never misses or reorders a change (DESIGN.md section 4).
    """

    Op = ListChangeOp

    hash_list = models.ForeignKey(
        HashList, on_delete=models.PROTECT, related_name="changes", verbose_name=_("hash list")
    )
    entry = models.ForeignKey(
        HashEntry, on_delete=models.PROTECT, related_name="changes", verbose_name=_("hash entry")
    )
    op = models.CharField(_("operation"), max_length=8, choices=Op.choices)
    seq = models.PositiveBigIntegerField(
        _("sequence number"), null=True, blank=True, editable=False
    )
    created_at = models.DateTimeField(_("written at"), auto_now_add=True)
    sequenced_at = models.DateTimeField(_("sequenced at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("list change")
        verbose_name_plural = _("list changes")
        constraints = [
            models.UniqueConstraint(fields=["hash_list", "seq"], name="listchange_unique_seq"),
            choices_check("op", ListChangeOp, "listchange_op_valid"),
            models.CheckConstraint(
                condition=(Q(seq__isnull=True) & Q(sequenced_at__isnull=True))
                | (Q(seq__gte=1) & Q(sequenced_at__isnull=False)),
                name="listchange_sequenced_together",
            ),
        ]
        indexes = [
            # An entry's history in feed order (snapshots: "no later change up to S").
            models.Index(fields=["entry", "seq"], name="listchange_entry_seq"),
            # The sequencer's queue: unsequenced rows in write order.
            models.Index(
                fields=["hash_list", "id"],
                name="listchange_pending",
                condition=Q(seq__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hash_list_id}#{self.seq or '…'} {self.op} {self.entry_id}"


class Snapshot(TimeStampedModel):
    """The whole active list at ``seq``, as signed gzip'd JSON Lines in Django storage."""

    hash_list = models.ForeignKey(
        HashList, on_delete=models.PROTECT, related_name="snapshots", verbose_name=_("hash list")
    )
    seq = models.PositiveBigIntegerField(_("sequence number"))
    entry_count = models.PositiveBigIntegerField(_("entries"))
    file = models.FileField(_("file"), upload_to="snapshots/", max_length=255)
    size_bytes = models.PositiveBigIntegerField(_("size in bytes"))
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    key_id = models.CharField(_("signing key id"), max_length=64)
    signature = models.BinaryField(_("signature"))

    class Meta:
        verbose_name = _("snapshot")
        verbose_name_plural = _("snapshots")
        constraints = [
            models.UniqueConstraint(fields=["hash_list", "seq"], name="snapshot_unique_seq"),
            models.CheckConstraint(
                condition=Q(sha256__regex=r"^[0-9a-f]{64}$"), name="snapshot_sha256_hex"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hash_list.slug}@{self.seq}"
