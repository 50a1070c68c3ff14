from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ShopConfig(AppConfig):
    name = "shop"
    verbose_name = _("Catalogue and stock")

    def ready(self) -> None:
        from shop import cache, checks  # noqa: F401 - checks registers the keyring check

        cache.connect_signals()  # catalogue edits invalidate the storefront cache
