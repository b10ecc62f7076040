"""The adopting project's URLs with taskruns mounted at v1/, as the README says."""

from django.urls import include, path

from .host_urls import urlpatterns as host_urlpatterns

urlpatterns = [*host_urlpatterns, path("v1/", include("taskruns.urls"))]
