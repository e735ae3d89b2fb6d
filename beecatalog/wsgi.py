"""WSGI entry point: ``gunicorn beecatalog.wsgi``."""
import os

from django.core.wsgi import get_wsgi_application

from beecatalog.chunked import ChunkedBodyMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beecatalog.settings")

application = ChunkedBodyMiddleware(get_wsgi_application())
