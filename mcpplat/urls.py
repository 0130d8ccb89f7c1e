from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("apps.common.urls")),
    path("admin/", admin.site.urls),
    # -- app url includes go below, one line each --
    path("", include("apps.accounts.urls")),
]
