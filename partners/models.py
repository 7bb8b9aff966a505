"""Participating platforms, their API keys, match reports and webhook deliveries (DESIGN.md 4-5)."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from hashlists.models import HashEntry, HashList, HashType
from tidkit import formats
from tidportal.crypto import EncryptedTextField
from tidportal.db import TimeStampedModel, choices_check


class PartnerStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    SUSPENDED = "suspended", _("Suspended")


class Partner(TimeStampedModel):
    Status = PartnerStatus

    name = models.CharField(_("name"), max_length=200, unique=True)
    slug = models.SlugField(_("slug"), max_length=64, unique=True)
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=Status.choices,
        default=Status.ACTIVE,
        help_text=_("A suspended partner's keys all fail at once."),
    )
    contact_email = models.EmailField(_("trust & safety contact"), blank=True)
    readable_lists = models.ManyToManyField(
        HashList, blank=True, related_name="readers", verbose_name=_("lists it may read")
    )
    webhook_url = models.URLField(_("webhook URL"), blank=True)
    # HMAC needs the secret itself, so unlike API keys it cannot be stored as a digest: it is
    # stored encrypted instead, and reads as an UnreadableSecret if the key it was encrypted
    # under is gone (tidportal/crypto.py).
    webhook_secret = EncryptedTextField(_("webhook secret"), max_length=128, blank=True)

    history = HistoricalRecords(excluded_fields=["webhook_secret"])

    class Meta:
        verbose_name = _("partner")
        verbose_name_plural = _("partners")
        ordering = ["name"]
        constraints = [choices_check("status", PartnerStatus, "partner_status_valid")]
        permissions = [("suspend_partner", _("Can suspend and reinstate partners"))]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class ApiKeyScope(models.TextChoices):
    LISTS_READ = "lists:read", _("Read lists")
    MATCHES_WRITE = "matches:write", _("Report matches")


class ApiKey(models.Model):
    """A partner API key, ``tid_<prefix>_<secret>``: stored as a SHA-256 digest found by prefix.

    The key itself is shown once, when created, and never stored.
    """

    Scope = ApiKeyScope

    partner = models.ForeignKey(
        Partner, on_delete=models.PROTECT, related_name="api_keys", verbose_name=_("partner")
    )
    name = models.CharField(_("name"), max_length=100, help_text=_("What or who uses this key."))
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    digest = models.CharField(_("SHA-256 of the key"), max_length=64, editable=False)
    scopes = models.JSONField(_("scopes"), default=list)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    history = HistoricalRecords(excluded_fields=["digest", "last_used_at"])

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(digest__regex=r"^[0-9a-f]{64}$"), name="apikey_digest_hex"
            ),
            models.CheckConstraint(
                condition=Q(prefix__regex=r"^[0-9a-z]{8,16}$"), name="apikey_prefix_format"
            ),
        ]
        permissions = [("revoke_apikey", _("Can revoke API keys"))]

    def __str__(self) -> str:
        return f"{self.partner} · {self.name} (tid_{self.prefix}_…)"

    def is_usable(self, *, at: "timezone.datetime | None" = None) -> bool:
        """Not revoked, not expired, and its partner not suspended."""
        now = at or timezone.now()
        return (
            self.revoked_at is None
            and (self.expires_at is None or self.expires_at > now)
            and self.partner.is_active
        )


class MatchReportAction(models.TextChoices):
    PENDING_REVIEW = "pending_review", _("Pending review")
    REMOVED = "removed", _("Removed")
    RESTRICTED = "restricted", _("Restricted")
    NO_ACTION = "no_action", _("No action")
    NOT_RELEVANT = "not_relevant", _("Not relevant")


def _distance_within_threshold() -> models.CheckConstraint:
    """The most a match of each type may differ from the entry it matched (DESIGN.md 3)."""
    condition = Q()
    for hash_type, limit in formats.MATCH_DISTANCES.items():
        condition |= Q(hash_type=hash_type, distance__lte=limit)
    return models.CheckConstraint(condition=condition, name="matchreport_distance_threshold")


class MatchReport(TimeStampedModel):
    """A partner's report that its content matched an entry, and what it did about it."""

    Action = MatchReportAction

    public_id = models.UUIDField(
        _("public id"),
        default=uuid.uuid4,
        unique=True,
        editable=False,
        help_text=_("Opaque, random id the reporting partner sees. Never sequential."),
    )
    partner = models.ForeignKey(
        Partner, on_delete=models.PROTECT, related_name="match_reports", verbose_name=_("partner")
    )
    entry = models.ForeignKey(
        HashEntry,
        on_delete=models.PROTECT,
        related_name="match_reports",
        verbose_name=_("hash entry"),
    )
    client_ref = models.CharField(
        _("partner's reference"),
        max_length=200,
        help_text=_("The partner's idempotency key: a repeat is not stored twice."),
    )
    hash_type = models.CharField(_("matched hash type"), max_length=8, choices=HashType.choices)
    distance = models.PositiveSmallIntegerField(_("distance"), default=0)
    listed_match_percent = models.FloatField(
        _("listed frames matched (%)"),
        null=True,
        blank=True,
        help_text=_("vPDQ only: share of the listed video's frames the partner's video matched."),
    )
    query_match_percent = models.FloatField(
        _("partner's frames matched (%)"),
        null=True,
        blank=True,
        help_text=_("vPDQ only: share of the partner's video frames that matched the listed one."),
    )
    content_ref = models.CharField(
        _("partner's content reference"),
        max_length=500,
        blank=True,
        help_text=_("Opaque to us; lets the partner find the content again."),
    )
    matched_at = models.DateTimeField(_("matched at"))
    action = models.CharField(_("action"), max_length=16, choices=Action.choices)
    action_at = models.DateTimeField(_("action taken at"))

    class Meta:
        verbose_name = _("match report")
        verbose_name_plural = _("match reports")
        ordering = ["-matched_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "client_ref"], name="matchreport_unique_client_ref"
            ),
            choices_check("action", MatchReportAction, "matchreport_action_valid"),
            choices_check("hash_type", HashType, "matchreport_hash_type_valid"),
            models.CheckConstraint(
                condition=Q(distance__lte=256), name="matchreport_distance_range"
            ),
            _distance_within_threshold(),
            # Frame percentages belong to vPDQ matches only, and are percentages.
            models.CheckConstraint(
                condition=Q(hash_type=HashType.VPDQ)
                | Q(listed_match_percent__isnull=True, query_match_percent__isnull=True),
                name="matchreport_percent_only_vpdq",
            ),
            models.CheckConstraint(
                condition=(
                    Q(listed_match_percent__isnull=True)
                    | Q(listed_match_percent__gte=0, listed_match_percent__lte=100)
                )
                & (
                    Q(query_match_percent__isnull=True)
                    | Q(query_match_percent__gte=0, query_match_percent__lte=100)
                ),
                name="matchreport_percent_range",
            ),
        ]
        indexes = [
            models.Index(fields=["entry", "action"], name="matchreport_entry_action"),
            models.Index(fields=["partner", "matched_at"], name="matchreport_partner_time"),
        ]

    def __str__(self) -> str:
        return f"{self.partner} {self.client_ref} ({self.action})"


class WebhookDeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed, will retry")
    GAVE_UP = "gave_up", _("Gave up")
    # A newer notification for the same partner and list tells it everything this one would.
    SUPERSEDED = "superseded", _("Superseded by a newer notification")


class WebhookDelivery(TimeStampedModel):
    """One "list changed" notification to one partner, with its retries (read-only for staff)."""

    Status = WebhookDeliveryStatus

    partner = models.ForeignKey(
        Partner,
        on_delete=models.PROTECT,
        related_name="webhook_deliveries",
        verbose_name=_("partner"),
    )
    hash_list = models.ForeignKey(
        HashList, on_delete=models.PROTECT, related_name="+", verbose_name=_("hash list")
    )
    seq = models.PositiveBigIntegerField(_("sequence number"))
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(
        _("last HTTP status"), null=True, blank=True
    )
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "hash_list", "seq"], name="webhookdelivery_unique"
            ),
            choices_check("status", WebhookDeliveryStatus, "webhookdelivery_status_valid"),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhookdelivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.partner} {self.hash_list_id}@{self.seq} ({self.status})"
