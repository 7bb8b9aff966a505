from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from cases.models import Case, CaseNote, MediaItem
from tidportal.admin_utils import NoDeleteAdminMixin, ReadOnlyAdminMixin, short_hash

MEDIA_FIELDS = [
    "media_type",
    "md5",
    "pdq",
    "pdq_quality",
    "phash",
    "vpdq",
    "publishable",
    "created_at",
]


class MediaItemInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = MediaItem
    extra = 0
    fields = ["media_type", "md5", "pdq", "pdq_quality", "phash", "frame_count", "publishable"]
    readonly_fields = fields
    verbose_name_plural = _("reported files (hashes only; the files never reach us)")

    @admin.display(description=_("vPDQ frames"))
    def frame_count(self, obj: MediaItem) -> int | str:
        return len(obj.vpdq) if obj.vpdq else "—"


class CaseNoteInline(admin.TabularInline):
    model = CaseNote
    extra = 1
    fields = ["text", "author", "created_at"]
    readonly_fields = ["author", "created_at"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # notes are a log: add, never rewrite

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Case)
class CaseAdmin(NoDeleteAdminMixin, SimpleHistoryAdmin):
    list_display = [
        "case_number",
        "status",
        "reporter",
        "item_count",
        "assigned_to",
        "created_at",
        "decided_at",
    ]
    list_filter = ["status", "reporter", "hash_list", "rejection_reason", "assigned_to"]
    search_fields = ["=case_number", "=items__md5", "=items__pdq", "=items__phash"]
    list_select_related = ["assigned_to"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "case_number",
        "status",
        "reporter",
        "under_18_when_made",
        "hash_list",
        "rejection_reason",
        "duplicate_of",
        "decided_by",
        "decided_at",
        "withdrawn_at",
        "created_at",
        "updated_at",
    ]
    fields = [*readonly_fields[:5], "assigned_to", *readonly_fields[5:]]
    inlines = [MediaItemInline, CaseNoteInline]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> Any:
        from django.db.models import Count

        return super().get_queryset(request).annotate(item_count=Count("items"))

    @admin.display(description=_("files"), ordering="item_count")
    def item_count(self, obj: Case) -> int:
        return obj.item_count  # type: ignore[attr-defined]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # cases come from reporters only

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is CaseNote:
            for note in formset.save(commit=False):
                note.author = request.user
                note.save()
            return
        super().save_formset(request, form, formset, change)


@admin.register(MediaItem)
class MediaItemAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "case",
        "media_type",
        "short_md5",
        "short_pdq",
        "pdq_quality",
        "publishable",
        "created_at",
    ]
    list_filter = ["media_type", "publishable"]
    search_fields = ["=md5", "=pdq", "=phash", "=case__case_number"]
    list_select_related = ["case"]
    fields = ["case", *MEDIA_FIELDS]

    @admin.display(description="MD5", ordering="md5")
    def short_md5(self, obj: MediaItem) -> str:
        return short_hash(obj.md5)

    @admin.display(description="PDQ", ordering="pdq")
    def short_pdq(self, obj: MediaItem) -> str:
        return short_hash(obj.pdq) or "—"
