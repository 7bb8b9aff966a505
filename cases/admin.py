"""The staff workplace for cases. Every decision goes through cases.services, which checks the
staff member's permission and the workflow; the admin only collects input and shows results."""

import re
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from cases import services
from cases.models import Case, CaseNote, MediaItem
from cases.near_duplicates import case_near_duplicates, indexes
from partners.models import MatchReport
from tidkit import formats
from tidportal.admin_utils import (
    NoDeleteAdminMixin,
    ReadOnlyAdminMixin,
    action_with_form,
    html_table,
    run_service_per_object,
    short_hash,
)

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
    verbose_name_plural = _("internal notes (never shown to the reporter)")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # notes are a log: add, never rewrite

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# ------------------------------------------------------------------------------------------------
# Queue filters
# ------------------------------------------------------------------------------------------------


class AssignmentFilter(admin.SimpleListFilter):
    title = _("assignment")
    parameter_name = "assigned"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("me", _("Assigned to me")), ("none", _("Unassigned"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "me":
            return queryset.filter(assigned_to=request.user)
        if self.value() == "none":
            return queryset.filter(assigned_to__isnull=True)
        return queryset


class WaitingFilter(admin.SimpleListFilter):
    title = _("age")
    parameter_name = "age"
    BANDS = {"1d": (None, 1), "1-3d": (1, 3), "3-7d": (3, 7), "7d+": (7, None)}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("1d", _("Under a day old")),
            ("1-3d", _("1 to 3 days old")),
            ("3-7d", _("3 to 7 days old")),
            ("7d+", _("Over a week old")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() not in self.BANDS:
            return queryset
        newest, oldest = self.BANDS[self.value()]
        now = timezone.now()
        if newest is not None:
            queryset = queryset.filter(created_at__lte=now - timedelta(days=newest))
        if oldest is not None:
            queryset = queryset.filter(created_at__gt=now - timedelta(days=oldest))
        return queryset


class MediaFilter(admin.SimpleListFilter):
    title = _("media types")
    parameter_name = "media"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("video", _("Has videos")), ("images", _("Images only"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        videos = MediaItem.objects.filter(case=OuterRef("pk"), media_type="video")
        if self.value() == "video":
            return queryset.filter(Exists(videos))
        if self.value() == "images":
            return queryset.filter(~Exists(videos))
        return queryset


class NearDuplicateFilter(admin.SimpleListFilter):
    title = _("near-duplicates")
    parameter_name = "near"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("yes", _("Has near-duplicates")),
            ("no", _("None")),
            ("misuse", _("Misuse suspected")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        match self.value():
            case "yes":
                return queryset.filter(near_duplicate_cases__gt=0)
            case "no":
                return queryset.filter(near_duplicate_cases=0)
            case "misuse":
                return queryset.filter(misuse_suspected=True)
        return queryset


class MatchesFilter(admin.SimpleListFilter):
    title = _("partner matches")
    parameter_name = "matches"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Matched by a platform")), ("removed", _("Removed by a platform"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        reports = MatchReport.objects.filter(entry__sources__media_item__case=OuterRef("pk"))
        if self.value() == "yes":
            return queryset.filter(Exists(reports))
        if self.value() == "removed":
            return queryset.filter(Exists(reports.filter(action=MatchReport.Action.REMOVED)))
        return queryset


# ------------------------------------------------------------------------------------------------
# Forms of the actions that need details
# ------------------------------------------------------------------------------------------------


class RejectForm(forms.Form):
    reason = forms.ChoiceField(
        label=_("Why is it not accepted? The reporter sees this category."),
        choices=[c for c in Case.RejectionReason.choices if c[0]],
    )
    note = forms.CharField(
        label=_("Internal note (optional)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class DuplicateForm(forms.Form):
    original = forms.CharField(label=_("Case number of the original case"), max_length=20)

    def clean_original(self) -> Case:
        number = services.case_number_normalise(self.cleaned_data["original"])
        case = Case.objects.filter(case_number=number).first()
        if case is None:
            raise forms.ValidationError(_("There is no case with that number."))
        return case


HEX_QUERY = re.compile(r"^[0-9a-fA-F]{16}$|^[0-9a-fA-F]{32}$|^[0-9a-fA-F]{64}$")


@admin.register(Case)
class CaseAdmin(NoDeleteAdminMixin, SimpleHistoryAdmin):
    list_display = [
        "case_number",
        "status",
        "reporter",
        "files",
        "near_duplicate_cases",
        "misuse_suspected",
        "assigned_to",
        "created_at",
        "decided_at",
    ]
    list_filter = [
        "status",
        AssignmentFilter,
        WaitingFilter,
        MediaFilter,
        NearDuplicateFilter,
        MatchesFilter,
        "reporter",
        "rejection_reason",
        "hash_list",
    ]
    search_fields = ["=case_number"]
    search_help_text = _(
        "A case number, or any hash: MD5 finds exact copies; a PDQ (64 hex) finds cases within "
        "31 bits and a pHash (16 hex) within 8."
    )
    list_select_related = ["assigned_to"]
    list_per_page = 50
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    show_full_result_count = False
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
        "near_duplicate_panel",
        "matches_panel",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "case_number",
                    "status",
                    "assigned_to",
                    "reporter",
                    "under_18_when_made",
                    "hash_list",
                ]
            },
        ),
        (
            _("Decision"),
            {
                "fields": [
                    "rejection_reason",
                    "duplicate_of",
                    "decided_by",
                    "decided_at",
                    "withdrawn_at",
                ]
            },
        ),
        (_("Near-duplicates across cases and list entries"), {"fields": ["near_duplicate_panel"]}),
        (_("Partner matches and takedowns"), {"fields": ["matches_panel"]}),
        (_("Times"), {"fields": ["created_at", "updated_at"]}),
    ]
    inlines = [MediaItemInline, CaseNoteInline]
    actions = ["assign_to_me", "accept", "reject", "mark_duplicate", "reopen"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Correlated subqueries, not a JOIN + GROUP BY: the database counts files only for the
        # page of cases it returns, instead of grouping every case before the LIMIT.
        def files(media_type: str) -> Subquery:
            return Subquery(
                MediaItem.objects.filter(case=OuterRef("pk"), media_type=media_type)
                .order_by()
                .values("case")
                .annotate(n=Count("pk"))
                .values("n")[:1]
            )

        return (
            super()
            .get_queryset(request)
            .annotate(
                image_count=Coalesce(files("image"), 0), video_count=Coalesce(files("video"), 0)
            )
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        number = services.case_number_normalise(term)
        if number and not HEX_QUERY.match(term):
            return queryset.filter(case_number=number), False
        if HEX_QUERY.match(term):
            return queryset.filter(pk__in=self._cases_near(term.lower())), True
        return super().get_search_results(request, queryset, term)

    @staticmethod
    def _cases_near(value: str) -> QuerySet:
        exact = Q(items__md5=value) | Q(items__pdq=value) | Q(items__phash=value)
        ids = set(Case.objects.filter(exact).values_list("pk", flat=True))
        idx = indexes()
        if len(value) == 64:
            near = idx.item_pdq.index.query(value, formats.PDQ_MATCH_DISTANCE)
        elif len(value) == 16:
            near = idx.item_phash.index.query(value, formats.PHASH_MATCH_DISTANCE)
        else:
            near = []
        ids |= set(
            MediaItem.objects.filter(pk__in=[i for i, _ in near]).values_list("case_id", flat=True)
        )
        return Case.objects.filter(pk__in=ids).values("pk")

    @admin.display(description=_("files"))
    def files(self, obj: Case) -> str:
        images, videos = obj.image_count, obj.video_count  # type: ignore[attr-defined]
        parts = [_("%(n)d img") % {"n": images}] if images else []
        if videos:
            parts.append(_("%(n)d video") % {"n": videos})
        return ", ".join(parts) or "—"

    @admin.display(description=_("near-duplicates"))
    def near_duplicate_panel(self, obj: Case) -> str:
        found = case_near_duplicates(case=obj)
        warning = ""
        if obj.misuse_suspected:
            warning = format_html(
                '<p class="errornote">{}</p>',
                _("Misuse suspected: these files match %(n)d unrelated cases.")
                % {"n": found.unrelated_case_count},
            )
        cases = html_table(
            [_("case"), _("status"), _("closest match"), _("matches")],
            (
                (
                    format_html(
                        '<a href="{}">{}</a>',
                        reverse("admin:cases_case_change", args=[hit.case.pk]),
                        hit.case.case_number,
                    ),
                    hit.case.get_status_display(),
                    f"{hit.best[0]} {'%' if hit.best[0] == 'vpdq' else 'd='}{hit.best[1]}",
                    len(hit.matches),
                )
                for hit in found.cases
            ),
            _("No other case has a near-duplicate of these files."),
        )
        entries = html_table(
            [_("entry"), _("list"), _("type"), _("distance"), _("status")],
            (
                (
                    format_html(
                        '<a href="{}">{}</a>',
                        reverse("admin:hashlists_hashentry_change", args=[hit.entry.pk]),
                        short_hash(hit.entry.value),
                    ),
                    hit.entry.hash_list.slug,
                    hit.entry.hash_type,
                    hit.distance,
                    hit.entry.get_status_display(),
                )
                for hit in found.entries
            ),
            _("No list entry is near these files."),
        )
        return format_html("{}{}<h4>{}</h4>{}", warning, cases, _("List entries"), entries)

    @admin.display(description=_("matches"))
    def matches_panel(self, obj: Case) -> str:
        reports = (
            MatchReport.objects.filter(entry__sources__media_item__case=obj)
            .select_related("partner", "entry")
            .distinct()
            .order_by("-matched_at")[:200]
        )
        return html_table(
            [_("partner"), _("entry"), _("action"), _("matched at"), _("action at")],
            (
                (
                    r.partner.name,
                    short_hash(r.entry.value),
                    r.get_action_display(),
                    r.matched_at,
                    r.action_at,
                )
                for r in reports
            ),
            _("No participating platform has reported a match yet."),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # cases come from reporters only

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "assigned_to":
            # Only people who can work cases, and no "add user" shortcut on a case page.
            kwargs["queryset"] = (
                get_user_model()
                .objects.filter(is_active=True, is_staff=True)
                .filter(
                    Q(is_superuser=True)
                    | Q(user_permissions__codename="review_case")
                    | Q(groups__permissions__codename="review_case")
                )
                .distinct()
                .order_by("username")
            )
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "assigned_to" and field is not None:
            field.widget.can_add_related = field.widget.can_change_related = False
            field.widget.can_delete_related = field.widget.can_view_related = False
        return field

    def save_model(self, request: HttpRequest, obj: Case, form: Any, change: bool) -> None:
        # Only the assignment is editable on the form; it goes through the workflow service.
        if "assigned_to" in form.changed_data and obj.assigned_to is not None:
            services.case_assign(
                case=Case.objects.get(pk=obj.pk), staff=request.user, assignee=obj.assigned_to
            )

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is CaseNote:
            for note in formset.save(commit=False):
                services.case_note_add(case=note.case, staff=request.user, text=note.text)
            return
        super().save_formset(request, form, formset, change)

    # --- actions -------------------------------------------------------------------------------

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("cases.review_case")

    def has_override_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("cases.override_case")

    @admin.action(description=_("Assign to me"), permissions=["review"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet) -> None:
        run_service_per_object(
            self,
            request,
            queryset,
            lambda case: services.case_assign(case=case, staff=request.user),
            _("%(n)d case(s) assigned to you."),
        )

    @admin.action(description=_("Accept: publish the hashes"), permissions=["review"])
    def accept(self, request: HttpRequest, queryset: QuerySet) -> None:
        cases = list(queryset)
        if len(cases) > 1:
            if not request.user.has_perm("cases.bulk_accept_case"):
                self.message_user(
                    request,
                    _("Only supervisors can accept several cases at once."),
                    messages.ERROR,
                )
                return
            accepted, problems = services.case_accept_many(cases=cases, staff=request.user)
            for problem in problems:
                self.message_user(request, problem, messages.ERROR)
            if accepted:
                self.message_user(request, _("%(n)d case(s) accepted.") % {"n": accepted})
            return
        run_service_per_object(
            self,
            request,
            queryset,
            lambda case: services.case_accept(case=case, staff=request.user),
            _("%(n)d case(s) accepted."),
        )

    @admin.action(description=_("Do not accept (with a reason)"), permissions=["review"])
    def reject(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        def apply(form: forms.Form) -> None:
            def decide(case: Case) -> None:
                services.case_reject(
                    case=case, staff=request.user, reason=form.cleaned_data["reason"]
                )
                if form.cleaned_data["note"]:
                    services.case_note_add(
                        case=case, staff=request.user, text=form.cleaned_data["note"]
                    )

            run_service_per_object(
                self, request, queryset, decide, _("%(n)d case(s) not accepted.")
            )

        return action_with_form(
            self,
            request,
            queryset,
            form_class=RejectForm,
            action="reject",
            title=_("Do not accept these cases"),
            explanation=_("Nothing from these cases is published. The reporter sees the reason."),
            submit_label=_("Do not accept"),
            apply=apply,
        )

    @admin.action(description=_("Mark as duplicate of another case"), permissions=["review"])
    def mark_duplicate(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        def apply(form: forms.Form) -> None:
            run_service_per_object(
                self,
                request,
                queryset,
                lambda case: services.case_mark_duplicate(
                    case=case, staff=request.user, original=form.cleaned_data["original"]
                ),
                _("%(n)d case(s) marked as duplicates."),
            )

        return action_with_form(
            self,
            request,
            queryset,
            form_class=DuplicateForm,
            action="mark_duplicate",
            title=_("Mark as duplicates"),
            explanation=_(
                "These cases will point to the original; nothing of theirs is published."
            ),
            submit_label=_("Mark as duplicates"),
            apply=apply,
        )

    @admin.action(description=_("Reopen a decided case (supervisors)"), permissions=["override"])
    def reopen(self, request: HttpRequest, queryset: QuerySet) -> None:
        run_service_per_object(
            self,
            request,
            queryset,
            lambda case: services.case_reopen(case=case, staff=request.user),
            _("%(n)d case(s) reopened for review."),
        )


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
