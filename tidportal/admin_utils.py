"""Admin helpers shared by the apps."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest


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


__all__ = ["NoDeleteAdminMixin", "ReadOnlyAdminMixin", "admin", "short_hash"]
