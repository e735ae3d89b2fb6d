"""Who may do what: reads need a user, writes the model permissions on entries."""
from django.conf import settings
from rest_framework.permissions import BasePermission, IsAdminUser, IsAuthenticated


class ModelPermission(IsAuthenticated):
    """An authenticated user holding ``perm``."""

    perm = ""

    def has_permission(self, request, view):
        return super().has_permission(request, view) and request.user.has_perm(self.perm)


class CanDeleteEntries(ModelPermission):
    message = "É preciso a permissão memory.delete_productmemoryentry."
    perm = "memory.delete_productmemoryentry"


class CanChangeEntries(ModelPermission):
    message = "É preciso a permissão memory.change_productmemoryentry."
    perm = "memory.change_productmemoryentry"


class MetricsAccess(BasePermission):
    """Follows ``METRICS_ALLOW``: ``anonymous``, ``token`` (any authenticated user) or ``staff``."""

    def has_permission(self, request, view):
        allow = settings.METRICS_ALLOW
        if allow == "anonymous":
            return True
        if allow == "token":
            return IsAuthenticated().has_permission(request, view)
        return IsAdminUser().has_permission(request, view)
