from django.urls import path

from memory.api import views

app_name = "memory_api"

urlpatterns = [
    path("stats/", views.StatsView.as_view(), name="stats"),
    path("list/", views.ListView.as_view(), name="list"),
    path("get/", views.GetView.as_view(), name="get"),
    path("delete/", views.DeleteView.as_view(), name="delete"),
    path("clear/", views.ClearView.as_view(), name="clear"),
    path("export/", views.ExportView.as_view(), name="export"),
    path("force-regenerate/", views.ForceRegenerateView.as_view(), name="force-regenerate"),
    path("health/", views.HealthView.as_view(), name="health"),
]
