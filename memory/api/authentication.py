"""How API clients prove who they are: a token, or the session of a staff user."""
from drf_spectacular.authentication import SessionScheme
from rest_framework.authentication import SessionAuthentication


class StaffSessionAuthentication(SessionAuthentication):
    """A logged-in session counts only for staff users; it keeps DRF's CSRF check on unsafe methods.

    Other session users are treated as anonymous, so that logging into the
    site never opens the API by itself: clients use tokens.
    """

    def authenticate(self, request):
        user = getattr(request._request, "user", None)
        if not user or not user.is_active or not user.is_staff:
            return None
        self.enforce_csrf(request)
        return (user, None)


class StaffSessionScheme(SessionScheme):
    """The OpenAPI description of :class:`StaffSessionAuthentication` (a session cookie)."""

    target_class = "memory.api.authentication.StaffSessionAuthentication"
    name = "staffSessionAuth"
