"""The serializer of L2 values (django-redis ``SERIALIZER``)."""
from __future__ import annotations

import json
from typing import Any

from django_redis.serializers.json import JSONSerializer


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"JSON: {name} não é um número válido")


# One decoder for every read: ``json.loads`` with an option builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


class StrictJSONSerializer(JSONSerializer):
    """django-redis' JSON serializer, reading only standard JSON: no ``NaN`` or ``Infinity``,
    which nothing the memory writes holds and which its API could not render."""

    def loads(self, value: bytes) -> Any:
        return _DECODER.decode(value.decode())
