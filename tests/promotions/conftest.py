from datetime import timedelta
from decimal import Decimal

import factory
import pytest
from django.utils import timezone

from promotions.models import Coupon, PriceTier
from tests.factories import MerchantFactory, ProductFactory


class CouponFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Coupon
        skip_postgeneration_save = True

    merchant = factory.SubFactory(MerchantFactory)
    code = factory.Sequence(lambda n: f"SAVE{n}")
    kind = Coupon.Kind.PERCENT
    value = Decimal("10")
    currency = ""

    @factory.post_generation
    def products(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.products.set(extracted)


class PriceTierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PriceTier

    product = factory.SubFactory(ProductFactory)
    min_quantity = 5
    unit_price = Decimal("9.00")


@pytest.fixture
def coupon(stocked_product):
    return CouponFactory(merchant=stocked_product.merchant, code="SAVE10")


def window(*, starts_in: timedelta | None = None, ends_in: timedelta | None = None) -> dict:
    now = timezone.now()
    return {
        "valid_from": now + starts_in if starts_in is not None else None,
        "valid_until": now + ends_in if ends_in is not None else None,
    }
