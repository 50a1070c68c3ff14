"""Reads of the shop app: storefront listings, stock counts, search, decrypting for export."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from merchants.models import Merchant
from shop import vault
from shop.models import CardKey, Category, ImportBatch, Product, ProhibitedTerm

SEARCH_LIMIT = 50
PUBLISHED = Product.ReviewStatus.PUBLISHED


def _normalise(text: str) -> str:
    """Case- and width-insensitive form (NFKC folds full-width letters, casefold folds case)."""
    return unicodedata.normalize("NFKC", text).casefold()


def active_prohibited_terms() -> list[str]:
    """The active prohibited terms, alphabetically (one query): for checking many products."""
    return list(ProhibitedTerm.objects.filter(is_active=True).values_list("term", flat=True))


def find_prohibited_term(*texts: str, terms: list[str] | None = None) -> str | None:
    """The first active prohibited term (alphabetically) contained in any of ``texts``;
    ``terms`` from ``active_prohibited_terms`` saves the query when checking many."""
    haystack = "\n".join(_normalise(text) for text in texts)
    for term in active_prohibited_terms() if terms is None else terms:
        needle = _normalise(term).strip()
        if needle and needle in haystack:
            return term
    return None


def listed(queryset: QuerySet[Product]) -> QuerySet[Product]:
    """Products a buyer may see: published, and a variant only under a published listing."""
    return queryset.filter(review_status=PUBLISHED).filter(
        Q(variant_of__isnull=True) | Q(variant_of__review_status=PUBLISHED)
    )


def free_stock_filter(prefix: str = "") -> Q:
    """Free keys: available, or reserved with a lapsed reservation."""
    now = timezone.now()
    return Q(**{f"{prefix}status__in": [CardKey.Status.AVAILABLE, CardKey.Status.RESERVED]}) & (
        Q(**{f"{prefix}status": CardKey.Status.AVAILABLE})
        | Q(**{f"{prefix}status": CardKey.Status.RESERVED, f"{prefix}reserved_until__lt": now})
    )


def with_stock(queryset: QuerySet[Product]) -> QuerySet[Product]:
    """Annotate ``free_keys``: a correlated count over the free-stock partial index."""
    free_keys = (
        CardKey.objects.filter(free_stock_filter(), product=OuterRef("pk"))
        .order_by()
        .values("product")
        .annotate(n=Count("id"))
        .values("n")
    )
    return queryset.annotate(
        free_keys=Coalesce(Subquery(free_keys, output_field=IntegerField()), Value(0))
    )


def stock_left(product: Product) -> int | None:
    """Units a buyer can still get; ``None`` means unlimited (manual, or reusable without cap)."""
    if product.delivery_mode == Product.DeliveryMode.MANUAL:
        return None
    if product.delivery_mode == Product.DeliveryMode.REUSABLE:
        has_key = getattr(product, "free_keys", None)
        if has_key is None:
            has_key = CardKey.objects.filter(
                product=product, status=CardKey.Status.AVAILABLE
            ).count()
        if not has_key:
            return 0
        if product.reusable_cap is None:
            return None
        return max(product.reusable_cap - product.reusable_sold, 0)
    free = getattr(product, "free_keys", None)
    if free is None:
        free = CardKey.objects.filter(free_stock_filter(), product=product).count()
    return int(free)


@dataclass
class Listing:
    """A storefront entry: a product and its variants, as the buyer chooses among them."""

    product: Product
    options: list[Product] = field(default_factory=list)

    @property
    def min_price(self) -> Decimal:
        return min(option.price for option in self.options)

    @property
    def stock(self) -> int | None:
        total = 0
        for option in self.options:
            left = stock_left(option)
            if left is None:
                return None
            total += left
        return total


def active_merchants() -> QuerySet[Merchant]:
    return Merchant.objects.filter(status=Merchant.Status.ACTIVE).order_by("name")


def get_active_merchant(*, slug: str) -> Merchant | None:
    return active_merchants().filter(slug=slug).first()


def _listings(products: list[Product]) -> list[Listing]:
    by_id: dict[int, Listing] = {}
    ordered: list[Listing] = []
    for product in products:
        if product.variant_of_id is None:
            listing = Listing(product=product, options=[product])
            by_id[product.pk] = listing
            ordered.append(listing)
    for product in products:
        if product.variant_of_id is not None and product.variant_of_id in by_id:
            by_id[product.variant_of_id].options.append(product)
    return ordered


def storefront_listings(*, merchant: Merchant) -> list[tuple[Category | None, list[Listing]]]:
    """Everything on sale in a store, grouped by category, in one query for products and stock
    plus one for categories."""
    products = list(
        with_stock(
            listed(Product.objects.filter(merchant=merchant, is_active=True))
            .filter(Q(variant_of__isnull=True) | Q(variant_of__is_active=True))
            .order_by("sort_order", "id")
        )
    )
    categories = list(Category.objects.filter(merchant=merchant))
    listings = _listings(products)
    grouped: list[tuple[Category | None, list[Listing]]] = []
    for category in categories:
        items = [entry for entry in listings if entry.product.category_id == category.pk]
        if items:
            grouped.append((category, items))
    uncategorised = [entry for entry in listings if entry.product.category_id is None]
    if uncategorised:
        grouped.append((None, uncategorised))
    return grouped


def get_listing(*, merchant: Merchant, slug: str) -> Listing | None:
    """A listing and its on-sale options by the listing's slug (a variant's slug redirects to
    its listing in the view)."""
    products = list(
        with_stock(
            listed(Product.objects.filter(merchant=merchant, is_active=True))
            .filter(Q(slug=slug) | Q(variant_of__slug=slug, variant_of__merchant=merchant))
            .select_related("variant_of")
            .order_by("sort_order", "id")
        )
    )
    for product in products:
        product.merchant = merchant  # every row is this merchant's: a Buy needs no reload
    listings = _listings(products)
    if listings:
        return listings[0]
    # The slug is a variant's own: its listing is its parent's (one hop; variants have none).
    variant = next((p for p in products if p.slug == slug and p.variant_of is not None), None)
    if variant is not None and variant.variant_of is not None and variant.variant_of.is_active:
        parent_listings = _listings(
            list(
                with_stock(
                    listed(Product.objects.filter(merchant=merchant, is_active=True))
                    .filter(Q(pk=variant.variant_of.pk) | Q(variant_of=variant.variant_of))
                    .order_by("sort_order", "id")
                )
            )
        )
        return parent_listings[0] if parent_listings else None
    return None


def search_products(*, query: str) -> QuerySet[Product]:
    query = query.strip()[:100]
    if not query:
        return Product.objects.none()
    return with_stock(
        Product.objects.filter(
            Q(title__icontains=query) | Q(description__icontains=query),
            is_active=True,
            variant_of__isnull=True,
            merchant__status=Merchant.Status.ACTIVE,
            review_status=PUBLISHED,
        )
        .select_related("merchant")
        .order_by("title", "id")
    )[:SEARCH_LIMIT]


def stock_summary(*, product: Product) -> dict[str, int]:
    counts = dict(
        CardKey.objects.filter(product=product)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {status: counts.get(status, 0) for status in CardKey.Status.values}


def export_unsold_keys(
    *, merchant: Merchant, batch: ImportBatch | None = None, product: Product | None = None
) -> list[tuple[int, str]]:
    """The merchant's explicit export: (key id, plaintext) of free keys, scoped to the merchant.
    The only place besides the buyer's order that decrypts stock."""
    keys = CardKey.objects.filter(free_stock_filter(), merchant=merchant).order_by("id")
    if batch is not None:
        keys = keys.filter(batch=batch)
    if product is not None:
        keys = keys.filter(product=product)
    return [
        (
            key.pk,
            vault.unseal(
                key_id=key.key_id,
                nonce=key.nonce,
                ciphertext=key.ciphertext,
                merchant_id=key.merchant_id,
                product_id=key.product_id,
                fingerprint=key.fingerprint,
                row_label=f"card key {key.pk}",
            ),
        )
        for key in keys.iterator(chunk_size=2000)
    ]
