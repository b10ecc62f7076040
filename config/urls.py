from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import JsonResponse
from django.urls import include, path, re_path
from django.views.defaults import page_not_found
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from .logins import throttled_login

# The browsable API's login view, as rest_framework.urls defines it.
DRF_LOGIN = auth_views.LoginView.as_view(template_name="rest_framework/login.html")

urlpatterns = [
    path("", RedirectView.as_view(url="/api/docs/", permanent=False)),
    # The two login views, throttled, ahead of the routes that define them.
    path("admin/login/", throttled_login(admin.site.login)),
    path("api-auth/login/", throttled_login(DRF_LOGIN)),
    path("admin/", admin.site.urls),
    path("api-auth/", include("rest_framework.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="config/redoc.html"),
        name="redoc",
    ),
    path("api/", include("taskruns.urls")),
]


def api_not_found(request, exception=None):
    """The JSON 404 of the demo's API, in the app's error shape."""
    return JsonResponse(
        {"type": "client_error", "errors": [{"code": "not_found", "detail": "Not found.", "attr": None}]},
        status=404,
    )


def json_not_found(request, exception=None):
    """404 for URLs no route matches: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return api_not_found(request, exception)
    return page_not_found(request, exception)


# Django ignores handler404 while DEBUG is on and shows its HTML debug page instead; the demo's
# API answers JSON in every setting, so its unmatched URLs end here. (A URL missing its trailing
# slash lands here too rather than in CommonMiddleware, which cannot redirect a PATCH and raises
# under DEBUG.) This is the demo's URLconf: the app's own urls never catch a host's URLs.
urlpatterns.append(re_path(r"^api/", api_not_found))


handler404 = json_not_found
