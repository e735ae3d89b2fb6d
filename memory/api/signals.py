"""Empty the token cache of every process when a token or a user changes.

A token deleted (revoked) or a user deactivated, deleted or demoted must stop
opening the API at once, not when the cached token expires.
"""
from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save
from rest_framework.authtoken.models import Token

from memory.engine.coherence import publish_auth_change


def _auth_changed(sender, **kwargs):
    publish_auth_change()


def connect() -> None:
    for model in (Token, get_user_model()):
        for signal in (post_save, post_delete):
            signal.connect(_auth_changed, sender=model, dispatch_uid=f"memory.api.auth_changed.{signal}.{model}")
