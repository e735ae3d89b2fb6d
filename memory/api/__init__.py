"""The REST API under ``/api/memory/`` (Django REST framework), and ``/metrics``."""
