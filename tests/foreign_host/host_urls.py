"""The adopting project's own URLs, as they were before taskruns."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("tests.foreign_host.shop.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
]
