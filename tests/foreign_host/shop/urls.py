from rest_framework.routers import DefaultRouter

from .views import ProductViewSet, TodoViewSet

router = DefaultRouter()
router.register("products", ProductViewSet)
router.register("todos", TodoViewSet)

urlpatterns = router.urls
