from django.apps import AppConfig


class ShopConfig(AppConfig):
    """The adopting project's own app: its users, products, to-dos and partner tokens."""

    name = "tests.foreign_host.shop"
    label = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import schema  # noqa: F401  (registers the partner scheme's schema extension)
