"""A short-lived cache of the rendered catalogue parts of the store and product pages.

Only what every buyer sees alike is cached: a store's product grid (with its resale listings and
reviews) and a product page's description, price tiers, Buy-form fields (unbound) and price line,
per merchant, page and language. Never the CSRF token, messages, the session, the captcha, the
referral cookie or a bound form: the views render those on every request.

A fragment lives ``STOREFRONT_CACHE_SECONDS`` (0 switches the cache off) and is used only
under the merchant's catalogue *version* it was built under, which the services bump when that
merchant's catalogue or stock changes (a product, category, price-tier, review or resale-listing
edit, an import, a void, a claim or release of keys, a reusable sale; see
``catalogue_changed``). A change nothing bumps (a reservation lapsing with
time, a supplier's stock under a reseller's store) shows after at most that many seconds. A
shown stock count is never a promise: checkout re-checks stock in its transaction.

The cache is an optimisation only: when Redis fails, the page is rendered as without it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils.translation import get_language

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A version outlives every fragment built under it by far; a lost version key reads as "0",
# which at worst serves a fragment built under "0" until it expires.
VERSION_TIMEOUT = 24 * 3600
# product id -> merchant id (a product never changes merchant), so a claim knowing only the
# product bumps its merchant without a query after the first.
_merchant_of_product: dict[int, int] = {}
_MAX_REMEMBERED = 10_000


def cache_seconds() -> int:
    return int(getattr(settings, "STOREFRONT_CACHE_SECONDS", 0))


def _version_key(merchant_id: int) -> str:
    return f"storefront:v:{merchant_id}"


def cached(*, merchant_id: int, name: str, build: Callable[[], T | None]) -> T | None:
    """The fragment ``name`` of a merchant's pages in the current language: from the cache, or
    ``build()`` (and stored, unless None). With the cache off or failing: ``build()``.

    One Redis round trip: the fragment is stored with the version it was built under and read
    together with the merchant's current version; it is used only while the two agree."""
    seconds = cache_seconds()
    if seconds <= 0:
        return build()
    version_key = _version_key(merchant_id)
    key = f"storefront:{merchant_id}:{get_language() or '-'}:{name}"
    try:
        found = cache.get_many([version_key, key])
    except Exception:
        logger.warning("storefront cache unavailable, rendering without it", exc_info=True)
        return build()
    version = found.get(version_key) or "0"
    entry = found.get(key)
    if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == version:
        return entry[1]
    value = build()
    if value is not None:
        try:
            cache.set(key, (version, value), seconds)
        except Exception:
            logger.warning("storefront cache unavailable, not storing", exc_info=True)
    return value


def _bump(merchant_id: int) -> None:
    try:
        cache.set(_version_key(merchant_id), uuid.uuid4().hex[:16], VERSION_TIMEOUT)
    except Exception:
        # The fragments then expire by themselves within STOREFRONT_CACHE_SECONDS.
        logger.warning("storefront cache version not bumped", exc_info=True)


def remember_products(products: Iterable[Any]) -> None:
    """Note loaded products' merchants, so that a claim of one of them (the Buy the page leads
    to) bumps its merchant's version without a query."""
    if len(_merchant_of_product) >= _MAX_REMEMBERED:
        _merchant_of_product.clear()
    for product in products:
        _merchant_of_product[product.pk] = product.merchant_id


def _merchant_for(product_id: int) -> int | None:
    merchant_id = _merchant_of_product.get(product_id)
    if merchant_id is None:
        from shop.models import Product

        merchant_id = (
            Product.objects.filter(pk=product_id).values_list("merchant_id", flat=True).first()
        )
        if merchant_id is not None:
            if len(_merchant_of_product) >= _MAX_REMEMBERED:
                _merchant_of_product.clear()
            _merchant_of_product[product_id] = merchant_id
    return merchant_id


def catalogue_changed(*, merchant_id: int | None = None, product_id: int | None = None) -> None:
    """A merchant's catalogue or stock changed (by merchant, or by one of its products): its
    cached fragments are stale. Bumped now, so the rest of this transaction and a test see it,
    and again after commit, so a page rendered meanwhile from the data before the commit is not
    kept under the new version."""
    if cache_seconds() <= 0:
        return
    if merchant_id is None and product_id is not None:
        merchant_id = _merchant_for(product_id)
    if merchant_id is None:
        return
    _bump(merchant_id)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(partial(_bump, merchant_id), robust=True)


def _on_model_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    if sender.__name__ == "Merchant":
        catalogue_changed(merchant_id=instance.pk)
    elif getattr(instance, "merchant_id", None) is not None:
        catalogue_changed(merchant_id=instance.merchant_id)
    elif getattr(instance, "product_id", None) is not None:
        catalogue_changed(product_id=instance.product_id)


def connect_signals() -> None:
    """Saves and deletes through the ORM of what the cached fragments show bump the version
    (admin and merchant-centre edits included); bulk updates call ``catalogue_changed``."""
    from affiliates.models import ResaleListing
    from merchants.models import Merchant
    from promotions.models import PriceTier
    from reviews.models import Review
    from shop.models import Category, Product

    for model in (Merchant, Product, Category, PriceTier, Review, ResaleListing):
        for signal in (post_save, post_delete):
            signal.connect(
                _on_model_change, sender=model, dispatch_uid=f"storefront-cache-{model.__name__}"
            )
