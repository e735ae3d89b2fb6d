"""The Celery app. Broker: ``CELERY_BROKER_URL``, else ``REDIS_URL``; with neither,
tasks run eagerly in the calling process, so the embedded default still works."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beecatalog.settings")

app = Celery("beecatalog")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
