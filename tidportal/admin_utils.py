"""Admin helpers shared by the apps."""

from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join


class ReadOnlyAdminMixin:
    """For records staff inspect but never edit by hand: feeds, logs, partners' reports."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class NoDeleteAdminMixin:
    """Evidence rows are never deleted from the admin; they change status with a reason."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def short_hash(value: str, length: int = 16) -> str:
    return value if len(value) <= length else f"{value[:length]}…"


def html_table(headers: Iterable[str], rows: Iterable[Iterable[Any]], empty: str) -> str:
    """A small read-only table for admin panels (values are escaped)."""
    rows = list(rows)
    if not rows:
        return format_html("<p>{}</p>", empty)
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def run_service_per_object(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    service: Callable[[Any], Any],
    done: str,
) -> None:
    """Call ``service`` for each selected object; report successes and each refusal clearly."""
    succeeded = 0
    for obj in queryset:
        try:
            service(obj)
            succeeded += 1
        except (ValidationError, PermissionDenied) as exc:
            text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            modeladmin.message_user(request, f"{obj}: {text}", messages.ERROR)
    if succeeded:
        modeladmin.message_user(request, done % {"n": succeeded}, messages.SUCCESS)


def action_with_form(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    form_class: type[forms.Form],
    action: str,
    title: str,
    explanation: str,
    submit_label: str,
    apply: Callable[[forms.Form], None],
) -> HttpResponse | None:
    """An admin action that first asks for details (a reason, a target) on a page of its own."""
    form = form_class(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        apply(form)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "explanation": explanation,
        "submit_label": submit_label,
        "queryset": queryset,
        "form": form,
        "action": action,
        "opts": modeladmin.model._meta,
    }
    return TemplateResponse(request, "admin/tid/action_form.html", context)
