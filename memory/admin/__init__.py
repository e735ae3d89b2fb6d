"""The Django admin of the memory: Django's autodiscovery imports this package."""
from memory.admin import entries, periodic_tasks  # noqa: F401  (registers the ModelAdmins)
