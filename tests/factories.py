from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from merchants.models import Merchant, MerchantMembership
from shop import services
from shop.models import Category, ImportBatch, Product


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")

    @factory.post_generation
    def password(obj, create, extracted, **kwargs):
        # Saved explicitly: skip_postgeneration_save means factory_boy will not save it for us.
        obj.set_password(extracted or "pw-for-tests-123")
        if create:
            obj.save(update_fields=["password"])


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Merchant
        skip_postgeneration_save = True

    slug = factory.Sequence(lambda n: f"store-{n}")
    name = factory.Sequence(lambda n: f"Store {n}")
    status = Merchant.Status.ACTIVE
    owner = factory.SubFactory(UserFactory)

    @factory.post_generation
    def membership(obj, create, extracted, **kwargs):
        if create:
            MerchantMembership.objects.get_or_create(
                user=obj.owner, defaults={"merchant": obj, "role": MerchantMembership.Role.OWNER}
            )


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category

    merchant = factory.SubFactory(MerchantFactory)
    name = factory.Sequence(lambda n: f"Category {n}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    merchant = factory.SubFactory(MerchantFactory)
    slug = factory.Sequence(lambda n: f"product-{n}")
    title = factory.Sequence(lambda n: f"Product {n}")
    price = Decimal("10.00")
    currency = "CNY"
    max_quantity = 10


def add_keys(product: Product, count: int, prefix: str = "KEY") -> list[str]:
    """Import ``count`` distinct keys into a product; returns their plaintexts."""
    lines = [f"{prefix}-{product.pk}-{i:06d}" for i in range(count)]
    services.import_keys(product=product, lines=lines, source=ImportBatch.Source.COMMAND)
    return lines
