"""A URLconf with one view that fails: what an unexpected error in a view looks like to Django."""
from django.urls import path


def failing_view(request):
    raise RuntimeError("falha proposital da view")


urlpatterns = [path("quebra/", failing_view)]
