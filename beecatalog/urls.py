from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.utils.translation import gettext_lazy as _
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from memory.api.graphql.views import GraphQLView
from memory.api.views import MetricsView

# The product's name heads every admin page (Django's default says "Django administration").
admin.site.site_header = "BeeCatalog Memory"
admin.site.site_title = "BeeCatalog Memory"
admin.site.index_title = _("Administration")

# Under /api/ Django's error pages answer JSON in DRF's shape; elsewhere they are Django's own.
handler400 = "memory.api.exceptions.bad_request"
handler403 = "memory.api.exceptions.permission_denied"
handler404 = "memory.api.exceptions.page_not_found"
handler500 = "memory.api.exceptions.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("memory/", include("memory.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/memory/", include("memory.api.urls")),
    # With or without the trailing slash: a POST is served, not redirected (curl resends no body).
    re_path(r"^api/graphql/?\Z", GraphQLView.as_view(), name="graphql"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: the Content-Security-Policy runs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    # Browsers ask for /favicon.ico on pages that link no icon (the API docs, the browsable API).
    path("favicon.ico", RedirectView.as_view(url=static("memory/favicon.svg")), name="favicon"),
]
