from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Max, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from hashlists import services
from hashlists.models import HashEntry, HashEntrySource, HashList, ListChange, Snapshot
from tidportal.admin_utils import (
    NoDeleteAdminMixin,
    ReadOnlyAdminMixin,
    action_with_form,
    run_service_per_object,
    short_hash,
)


@admin.register(HashList)
class HashListAdmin(NoDeleteAdminMixin, admin.ModelAdmin):
    list_display = ["slug", "name", "published", "last_seq", "created_at"]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).annotate(last_seq=Max("changes__seq"))

    @admin.display(description=_("last sequence number"), ordering="last_seq")
    def last_seq(self, obj: HashList) -> int:
        return obj.last_seq or 0  # type: ignore[attr-defined]

    list_filter = ["published"]
    search_fields = ["slug", "name"]
    readonly_fields = ["created_at", "updated_at"]
    prepopulated_fields = {"slug": ["name"]}


class HashEntrySourceInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = HashEntrySource
    extra = 0
    fields = ["media_item", "case_number", "created_at"]
    readonly_fields = fields
    verbose_name_plural = _("reported files backing this entry")

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("media_item__case")

    @admin.display(description=_("case"))
    def case_number(self, obj: HashEntrySource) -> str:
        return obj.media_item.case.case_number


class EntryRemovalForm(forms.Form):
    reason = forms.ChoiceField(
        label=_("Reason"),
        choices=[(r.value, r.label) for r in services.STAFF_REMOVAL_REASONS],
    )
    note = forms.CharField(
        label=_("Note for the record"), required=False, widget=forms.Textarea(attrs={"rows": 3})
    )


@admin.register(HashEntry)
class HashEntryAdmin(NoDeleteAdminMixin, SimpleHistoryAdmin):
    list_display = [
        "public_id",
        "hash_list",
        "hash_type",
        "short_value",
        "media_type",
        "quality",
        "status",
        "backing_case_count",
        "flagged_at",
        "created_at",
    ]
    list_filter = [
        "hash_list",
        "hash_type",
        "media_type",
        "status",
        "removal_reason",
        ("flagged_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["=value", "=public_id"]
    list_select_related = ["hash_list"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "public_id",
        "hash_list",
        "hash_type",
        "value",
        "frames",
        "media_type",
        "quality",
        "status",
        "removal_reason",
        "backing_case_count",
        "flagged_at",
        "created_at",
        "updated_at",
    ]
    readonly_fields = [*readonly_fields, "removal_note"]
    fields = readonly_fields
    inlines = [HashEntrySourceInline]

    @admin.display(description=_("value"), ordering="value")
    def short_value(self, obj: HashEntry) -> str:
        return short_hash(obj.value)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # entries come from accepted cases, never typed in

    actions = ["remove_from_list"]

    def has_remove_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("hashlists.change_hashentry")

    @admin.action(description=_("Remove from the list (with a reason)"), permissions=["remove"])
    def remove_from_list(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        def apply(form: forms.Form) -> None:
            run_service_per_object(
                self,
                request,
                queryset,
                lambda entry: services.hash_entry_remove(
                    entry=entry,
                    staff=request.user,
                    reason=form.cleaned_data["reason"],
                    note=form.cleaned_data["note"],
                ),
                _("%(n)d entr(y/ies) removed; partners receive the removal in the feed."),
            )

        return action_with_form(
            self,
            request,
            queryset,
            form_class=EntryRemovalForm,
            action="remove_from_list",
            title=_("Remove entries from the list"),
            explanation=_(
                "Partners are told to stop matching these hashes. A later report of the same "
                "hash will not bring them back."
            ),
            submit_label=_("Remove"),
            apply=apply,
        )


@admin.register(ListChange)
class ListChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["hash_list", "seq", "op", "entry", "created_at", "sequenced_at"]
    list_filter = ["hash_list", "op", ("seq", admin.EmptyFieldListFilter)]
    search_fields = ["=entry__value", "=entry__public_id"]
    list_select_related = ["hash_list", "entry"]


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["hash_list", "seq", "entry_count", "size_bytes", "key_id", "created_at"]
    list_filter = ["hash_list"]
    search_fields = ["=sha256"]
    list_select_related = ["hash_list"]
    exclude = ["signature"]
