"""``manage.py seed_demo`` (``make demo``): the demo platform with its growth tools, seeded through
the real services, and a second run that changes nothing."""

from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from affiliates.models import Affiliate, AffiliateProgramme, Referral, ResaleListing, ResaleSale
from ledger.models import Journal
from ledger.selectors import misowned_account_ids, trial_balance, unbalanced_journal_ids
from merchants.models import CustomerNote, Merchant, ProductViewDay
from orders.models import Delivery, Order, Payment
from promotions.models import Coupon, CouponRedemption, PriceTier
from reviews.models import Review
from shop.models import CardKey, Product
from webhooks.models import NotificationSettings

pytestmark = pytest.mark.django_db(transaction=True)


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", keys=10, stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    models = [
        Merchant,
        Product,
        CardKey,
        Coupon,
        CouponRedemption,
        PriceTier,
        AffiliateProgramme,
        Affiliate,
        ResaleListing,
        ResaleSale,
        Referral,
        Order,
        Payment,
        Delivery,
        Journal,
        Review,
        CustomerNote,
        NotificationSettings,
    ]
    numbers = {model.__name__: model.objects.count() for model in models}
    numbers["views"] = sum(ProductViewDay.objects.values_list("views", flat=True))
    numbers["sold"] = CardKey.objects.filter(status=CardKey.Status.SOLD).count()
    numbers["replies"] = Review.objects.exclude(reply="").count()
    return numbers


def passwords(path: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in path.read_text().splitlines())


def test_seed_demo_shows_the_growth_tools_and_runs_twice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # .demo-passwords is written to the working directory
    first = seed()

    nebula = Merchant.objects.get(slug="nebula-keys")
    panda = Merchant.objects.get(slug="panda-soft")
    coupons = {coupon.code: coupon for coupon in Coupon.objects.all()}
    assert coupons["WELCOME10"].merchant == nebula
    assert coupons["WELCOME10"].kind == Coupon.Kind.PERCENT
    assert coupons["SAVE5"].merchant == panda
    assert coupons["SAVE5"].kind == Coupon.Kind.FIXED
    assert "coupon WELCOME10" in first and "coupon SAVE5" in first
    assert list(
        PriceTier.objects.filter(product__slug="stellar-odyssey").values_list(
            "min_quantity", "unit_price"
        )
    ) == [(3, Decimal("55.00")), (5, Decimal("52.00"))]
    assert AffiliateProgramme.objects.get(merchant=nebula).enabled

    # The demo affiliate signs in with the printed password, kept with the others.
    stored = passwords(tmp_path / ".demo-passwords")
    assert set(stored) == {"staff", "alice", "bob", "affiliate@example.com"}
    assert f"affiliate@example.com / {stored['affiliate@example.com']}" in first
    affiliate = Affiliate.objects.select_related("user").get()
    assert affiliate.user.username == "affiliate@example.com"
    assert affiliate.user.check_password(stored["affiliate@example.com"])

    # Panda resells Nebula's gift card at its own price, above Nebula's floor.
    listing = ResaleListing.objects.get()
    assert listing.merchant == panda and listing.offer.merchant == nebula
    assert listing.price > listing.offer.floor_price

    # Every demo order was paid through the sandbox callback and delivered from stock.
    orders = list(Order.objects.all())
    assert len(orders) == 8
    assert all(order.status == Order.Status.DELIVERED for order in orders)
    assert all(
        Payment.objects.filter(order=order, status=Payment.Status.SUCCEEDED).exists()
        for order in orders
    )
    assert Journal.objects.filter(kind="sale").count() == len(orders)
    auto = [o for o in orders if o.product.delivery_mode == Product.DeliveryMode.AUTO]
    assert CardKey.objects.filter(status=CardKey.Status.SOLD).count() == sum(
        o.quantity for o in auto
    )
    assert unbalanced_journal_ids() == []
    assert misowned_account_ids() == []
    assert all(total == 0 for total in trial_balance().values())
    # The tier, both coupons, the referral and the resale each priced one order.
    assert Order.objects.filter(quantity=3, unit_price=Decimal("55.00")).count() == 1
    assert CouponRedemption.objects.filter(released_at__isnull=True).count() == 2
    assert Order.objects.filter(discount__gt=0).count() == 2
    assert Referral.objects.get().order.product.slug == "stellar-odyssey-deluxe"
    sale = ResaleSale.objects.get()
    assert sale.reseller == panda and sale.supplier == nebula
    assert sale.order.amount == listing.price

    # Reviews with a reply on each store, and data for the analytics and customer pages.
    assert Review.objects.filter(merchant=nebula).count() == 3
    assert Review.objects.filter(merchant=panda).count() == 2
    assert Review.objects.filter(merchant=nebula).exclude(reply="").exists()
    assert Review.objects.filter(merchant=panda).exclude(reply="").exists()
    assert ProductViewDay.objects.filter(merchant=nebula).exists()
    assert CustomerNote.objects.filter(merchant=nebula).exists()

    before = counts()
    second = seed()
    assert counts() == before
    assert passwords(tmp_path / ".demo-passwords") == stored
    assert "8 delivered (0 new), 5 reviewed" in second
    for username, password in stored.items():
        assert f"{username} / {password}" in second
