from django.urls import re_path

from memory.api import views

app_name = "memory_api"


def route(name: str, view):
    """``name/`` and ``name`` alike: a POST without the trailing slash is served, not redirected
    (a 301 after which curl resends no body). The schema lists the route once, as ``name/``;
    ``reverse()`` gives ``name``, which is served the same."""
    return re_path(rf"^{name}/?\Z", view, name=name)


urlpatterns = [
    route("stats", views.StatsView.as_view()),
    route("list", views.ListView.as_view()),
    route("get", views.GetView.as_view()),
    route("delete", views.DeleteView.as_view()),
    route("clear", views.ClearView.as_view()),
    route("export", views.ExportView.as_view()),
    route("force-regenerate", views.ForceRegenerateView.as_view()),
    route("health", views.HealthView.as_view()),
    route("edit", views.EditView.as_view()),
    route("approve", views.ApproveView.as_view()),
    route("versions", views.VersionsView.as_view()),
    route("restore", views.RestoreView.as_view()),
]
