from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from partners.models import ApiKey, MatchReport, Partner, WebhookDelivery
from partners.services import api_key_create, api_key_revoke, partner_set_status
from tidportal.admin_utils import NoDeleteAdminMixin, ReadOnlyAdminMixin, run_service_per_object
from tidportal.crypto import UnreadableSecret


class ApiKeyInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ["name", "prefix", "scopes", "expires_at", "revoked_at", "last_used_at", "created_at"]
    readonly_fields = fields
    verbose_name_plural = _("API keys (the secret is shown once, when a key is created)")


class PartnerForm(forms.ModelForm):
    webhook_url = forms.URLField(
        label=_("webhook URL"),
        required=False,
        assume_scheme="https",
        help_text=_("We POST {list, seq} here, signed with the secret below, when a list changes."),
    )
    webhook_secret = forms.CharField(
        label=_("webhook secret"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Write-only: leave empty to keep the current secret."),
    )

    class Meta:
        model = Partner
        fields = [
            "name",
            "slug",
            "contact_email",
            "readable_lists",
            "webhook_url",
            "webhook_secret",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The form never holds the secret, so no page can show it, and saving without typing a
        # new one does not count as changing it.
        self.initial["webhook_secret"] = ""
        if isinstance(self.instance.webhook_secret, UnreadableSecret):
            self.fields["webhook_secret"].help_text = _(
                "The stored secret cannot be decrypted (the server's key changed), so no webhook "
                "is sent: set a new secret and give it to the partner."
            )

    def clean_webhook_secret(self) -> str | UnreadableSecret:
        return self.cleaned_data["webhook_secret"] or self.instance.webhook_secret


@admin.register(Partner)
class PartnerAdmin(NoDeleteAdminMixin, SimpleHistoryAdmin):
    form = PartnerForm
    list_display = ["name", "slug", "status", "contact_email", "created_at"]
    list_filter = ["status", "readable_lists"]
    search_fields = ["name", "slug", "contact_email"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["readable_lists"]
    readonly_fields = ["status", "created_at", "updated_at"]
    inlines = [ApiKeyInline]
    actions = ["suspend", "reinstate"]

    def has_suspend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("partners.suspend_partner")

    @admin.action(description=_("Suspend: all their keys stop working"), permissions=["suspend"])
    def suspend(self, request: HttpRequest, queryset: Any) -> None:
        run_service_per_object(
            self,
            request,
            queryset,
            lambda p: partner_set_status(partner=p, staff=request.user, status="suspended"),
            _("%(n)d partner(s) suspended."),
        )

    @admin.action(description=_("Reinstate"), permissions=["suspend"])
    def reinstate(self, request: HttpRequest, queryset: Any) -> None:
        run_service_per_object(
            self,
            request,
            queryset,
            lambda p: partner_set_status(partner=p, staff=request.user, status="active"),
            _("%(n)d partner(s) reinstated."),
        )


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices, widget=forms.CheckboxSelectMultiple, label=_("scopes")
    )

    class Meta:
        model = ApiKey
        fields = ["partner", "name", "scopes", "expires_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(NoDeleteAdminMixin, SimpleHistoryAdmin):
    form = ApiKeyForm
    list_display = [
        "partner",
        "name",
        "prefix",
        "scopes",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "created_at",
    ]
    list_filter = ["partner", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["=prefix", "name", "partner__name"]
    list_select_related = ["partner"]
    readonly_fields = ["prefix", "revoked_at", "last_used_at", "created_by", "created_at"]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        # A key's partner and scopes are fixed once it exists: make a new key instead.
        fixed = ["partner", "scopes"] if obj else []
        return [*fixed, *self.readonly_fields]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name", "expires_at"])
            return
        key, raw_key = api_key_create(
            partner=form.cleaned_data["partner"],
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            expires_at=form.cleaned_data["expires_at"],
            created_by=request.user,
        )
        obj.pk, obj.prefix, obj.digest, obj._state.adding = key.pk, key.prefix, key.digest, False
        messages.warning(
            request,
            format_html(
                _("Copy this API key now: it is shown only once and cannot be recovered. {key}"),
                key=format_html('<code class="api-key">{}</code>', raw_key),
            ),
        )

    @admin.action(description=_("Revoke the selected keys"), permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        for key in queryset:
            api_key_revoke(key=key)
        self.message_user(request, _("%(n)d key(s) revoked.") % {"n": len(queryset)})

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("partners.revoke_apikey")


@admin.register(MatchReport)
class MatchReportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "partner",
        "client_ref",
        "entry",
        "hash_type",
        "distance",
        "action",
        "matched_at",
        "action_at",
    ]
    list_filter = ["partner", "action", "hash_type"]
    # A partner quoting a report names it by the id the API gave it (public_id).
    search_fields = ["=public_id", "=client_ref", "=entry__value", "=entry__public_id"]
    list_select_related = ["partner", "entry"]
    date_hierarchy = "matched_at"
    readonly_fields = ["public_id", "created_at", "updated_at"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "partner",
        "hash_list",
        "seq",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status", "partner", "hash_list"]
    date_hierarchy = "created_at"
    search_fields = ["partner__name"]
    list_select_related = ["partner", "hash_list"]
