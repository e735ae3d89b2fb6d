"""Who may do what: reads need a user, writes the model permissions on entries, health's
checks the view permission."""
from django.conf import settings
from django.db import Error as DatabaseLibraryError
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission, IsAdminUser, IsAuthenticated

from memory.models import APPROVE_PERMISSION, EDIT_PERMISSION, OVERRIDE_APPROVAL_PERMISSION

VIEW_ENTRIES = "memory.view_productmemoryentry"


class ModelPermission(IsAuthenticated):
    """An authenticated user holding ``perm``."""

    perm = ""

    def has_permission(self, request, view):
        return super().has_permission(request, view) and request.user.has_perm(self.perm)


class CanDeleteEntries(ModelPermission):
    message = "É preciso a permissão memory.delete_productmemoryentry."
    perm = "memory.delete_productmemoryentry"


class CanClearEntries(ModelPermission):
    message = "É preciso a permissão memory.clear_productmemoryentry."
    perm = "memory.clear_productmemoryentry"


class CanChangeEntries(ModelPermission):
    message = "É preciso a permissão memory.change_productmemoryentry."
    perm = "memory.change_productmemoryentry"


class CanEditContent(ModelPermission):
    """Editing content and restoring a version: a person writes the content."""

    message = f"É preciso a permissão {EDIT_PERMISSION}."
    perm = EDIT_PERMISSION


class CanApproveContent(ModelPermission):
    message = f"É preciso a permissão {APPROVE_PERMISSION}."
    perm = APPROVE_PERMISSION


OVERRIDE_APPROVAL_REFUSED = f"override_approval exige a permissão {OVERRIDE_APPROVAL_PERMISSION}."


def may_override_approval(request) -> bool:
    """Whether the user may regenerate approved content (``override_approval``)."""
    return request.user.has_perm(OVERRIDE_APPROVAL_PERMISSION)


def sees_health_checks(request) -> bool:
    """True for an authenticated user (token or staff session) holding ``memory.view_productmemoryentry``.

    Health answers anyone, so credentials that are wrong, or that cannot be checked because
    PostgreSQL is down, count as none rather than failing the request.
    """
    try:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(VIEW_ENTRIES))
    except (APIException, DatabaseLibraryError):
        return False


class MetricsAccess(BasePermission):
    """Follows ``METRICS_ALLOW``: ``anonymous``, ``token`` (any authenticated user) or ``staff``."""

    def has_permission(self, request, view):
        allow = settings.METRICS_ALLOW
        if allow == "anonymous":
            return True
        if allow == "token":
            return IsAuthenticated().has_permission(request, view)
        return IsAdminUser().has_permission(request, view)
