"""Stored XSS: script payloads in every merchant-written and buyer-written field come out
escaped (or nh3-cleaned, for merchant rich text) on the storefront, the product page, the order
page and both admin sites."""

import re

import pytest

from merchants.models import Merchant
from orders.models import Order
from security.html import sanitize_html
from shop.models import Product
from tests.conftest import open_payment, place, verify_otp
from tests.factories import CategoryFactory, MerchantFactory, ProductFactory, UserFactory, add_keys
from tests.security.helpers import english_client
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert('xss')</script>"
IMG = '<img src=x onerror="alert(1)">'
LINK = '<a href="javascript:alert(1)">click</a>'
BREAKOUT = '"><svg onload=alert(1)>'
PAYLOAD = f"x{SCRIPT}{IMG}{LINK}{BREAKOUT}y"
# A quoted local part is a valid address and may hold markup (but no spaces).
EMAIL = '"<script>alert(1)</script><svg/onload=alert(1)>"@example.com'

DANGEROUS = [
    re.compile(r"<script>alert", re.I),
    re.compile(r"<img[^>]*\sonerror\s*=", re.I),
    re.compile(r"<svg[^>]*[\s/]onload\s*=", re.I),
    re.compile(r"href\s*=\s*[\"']?\s*javascript:", re.I),
]


def assert_safe(response, where: str, *, shows_escaped: bool = False) -> None:
    assert response.status_code == 200, where
    body = response.content.decode()
    if shows_escaped:  # the payload is on the page, as text
        assert "&lt;script&gt;alert(" in body, where
    for pattern in DANGEROUS:
        assert not pattern.search(body), f"{where}: {pattern.pattern}"


@pytest.fixture
def poisoned():
    merchant = MerchantFactory(
        name=f"Shop{BREAKOUT}",
        announcement=PAYLOAD,
        contact=PAYLOAD,
        status=Merchant.Status.ACTIVE,
    )
    category = CategoryFactory(merchant=merchant, name=f"Cat{BREAKOUT}")
    product = ProductFactory(
        merchant=merchant,
        category=category,
        title=f"Game{SCRIPT}",
        description=PAYLOAD,
        how_to_use=PAYLOAD,
        delivery_mode=Product.DeliveryMode.MANUAL,
        manual_fields=[{"name": "uid", "label": f"UID{IMG}"}],
    )
    ProductFactory(
        merchant=merchant,
        variant_of=product,
        slug="variant",
        title="Variant",
        variant_label=f"Big{BREAKOUT}",
    )
    auto = ProductFactory(merchant=merchant, slug="auto", title="Auto", how_to_use=PAYLOAD)
    add_keys(auto, 2)
    placed = place(product, email=EMAIL, manual_inputs={"uid": PAYLOAD})
    return merchant, product, placed


def test_sanitize_keeps_formatting_and_drops_scripts():
    cleaned = str(
        sanitize_html(f"<p><strong>Hi</strong> <a href='https://a.example'>a</a></p>{PAYLOAD}")
    )
    assert "<strong>Hi</strong>" in cleaned
    assert 'href="https://a.example"' in cleaned
    assert 'rel="noopener noreferrer nofollow"' in cleaned
    for pattern in DANGEROUS:
        assert not pattern.search(cleaned)
    plain = str(sanitize_html("line one\nline two\n\n1 < 2 & 3"))
    assert plain == "<p>line one<br>line two</p>\n\n<p>1 &lt; 2 &amp; 3</p>"


def test_storefront_product_and_search_pages_are_safe(poisoned):
    merchant, product, _order = poisoned
    client = english_client()
    assert_safe(client.get("/"), "home")
    assert_safe(client.get(f"/s/{merchant.slug}/"), "store")
    assert_safe(client.get(f"/s/{merchant.slug}/p/{product.slug}/"), "product", shows_escaped=True)
    assert_safe(client.get("/search/", {"q": PAYLOAD}), "search")
    bad = client.post(
        f"/s/{merchant.slug}/p/{product.slug}/",
        {"option": product.pk, "quantity": 1, "email": PAYLOAD, "gateway": "sandbox"},
    )
    assert bad.status_code == 400
    for pattern in DANGEROUS:
        assert not pattern.search(bad.content.decode())


def test_order_page_and_lookup_are_safe(poisoned):
    _merchant, _product, placed = poisoned
    client = english_client()
    assert_safe(client.get(f"/o/{placed.token}/"), "order page", shows_escaped=True)
    lookup = client.post(
        "/lookup/", {"number": PAYLOAD[:60], "email": EMAIL, "query_password": PAYLOAD[:60]}
    )
    for pattern in DANGEROUS:
        assert not pattern.search(lookup.content.decode())


def test_delivered_order_shows_sanitised_how_to_use(poisoned):
    merchant, _product, _order = poisoned
    auto = Product.objects.get(merchant=merchant, slug="auto")
    placed = place(auto, email=EMAIL)
    pay(open_payment(placed.order))
    placed.order.refresh_from_db()
    assert placed.order.status == Order.Status.DELIVERED
    page = english_client().get(f"/o/{placed.token}/")
    assert_safe(page, "delivered order page")
    assert "how-to-use" in page.content.decode()


def test_both_admin_sites_are_safe(poisoned):
    merchant, product, placed = poisoned
    order = placed.order
    owner = english_client()
    owner.force_login(merchant.owner)
    for url in [
        "/merchant/",
        "/merchant/shop/product/",
        f"/merchant/shop/product/{product.pk}/change/",
        "/merchant/shop/category/",
        f"/merchant/merchants/merchant/{merchant.pk}/change/",
        "/merchant/orders/order/",
        f"/merchant/orders/order/{order.pk}/change/",
        f"/merchant/orders/order/{order.pk}/deliver/",
    ]:
        assert_safe(owner.get(url), url, shows_escaped="/order/" in url)

    staff = UserFactory(username="ops", is_staff=True, is_superuser=True)
    admin = english_client()
    admin.force_login(staff)
    verify_otp(admin, staff)
    for url in [
        "/admin/",
        "/admin/shop/product/",
        f"/admin/shop/product/{product.pk}/change/",
        "/admin/merchants/merchant/",
        f"/admin/merchants/merchant/{merchant.pk}/change/",
        "/admin/orders/order/",
        f"/admin/orders/order/{order.pk}/change/",
        "/admin/audit/auditentry/",
    ]:
        assert_safe(admin.get(url), url, shows_escaped=url.endswith(f"{order.pk}/change/"))
