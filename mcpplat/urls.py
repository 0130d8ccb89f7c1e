from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    path("", include("apps.common.urls")),
    path("admin/", admin.site.urls),
    # -- app url includes go below, one line each --
    path("", include("apps.accounts.urls")),
    path("api/", include("apps.runs.api.urls")),
    path("support/", include("apps.support.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("api/", include("apps.tasks.api.urls")),
]
