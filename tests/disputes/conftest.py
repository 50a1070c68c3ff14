import pytest

from tests.disputes.factories import StaffFactory, delivered_order, staff_client_for
from tests.factories import MerchantFactory, ProductFactory, add_keys


@pytest.fixture(autouse=True)
def _private_media(settings, tmp_path):
    """Screenshots land in a throw-away MEDIA_ROOT."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def shop(db):
    """A merchant whose product has 5 keys in stock."""
    merchant = MerchantFactory()
    product = ProductFactory(merchant=merchant)
    keys = add_keys(product, 5)
    return merchant, product, keys


@pytest.fixture
def delivered(shop):
    _merchant, product, _keys = shop
    return delivered_order(product)


@pytest.fixture
def staff(db):
    return StaffFactory()


@pytest.fixture
def staff_client(staff):
    return staff_client_for(staff)
