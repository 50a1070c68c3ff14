"""The audit log: admin adds, changes, deletes and actions on both sites, sign-ins and -outs,
with actor, kind, IP and user agent; read-only in the staff admin."""

import pytest
from django.contrib.admin.models import LogEntry

from audit.models import AuditEntry
from shop.models import CardKey, Category, Product
from tests.conftest import verify_otp
from tests.factories import CategoryFactory, MerchantFactory, ProductFactory, UserFactory, add_keys
from tests.merchants.test_merchant_admin import product_form_data
from tests.security.helpers import PASSWORD, english_client

pytestmark = pytest.mark.django_db

AGENT = "AuditTest/1.0"


def merchant_client(merchant, ip="198.51.100.7"):
    client = english_client(REMOTE_ADDR=ip, HTTP_USER_AGENT=AGENT)
    client.force_login(merchant.owner)
    return client


def test_merchant_add_change_delete_and_action_are_audited():
    merchant = MerchantFactory()
    client = merchant_client(merchant)

    added = client.post("/merchant/shop/product/add/", product_form_data(title="Audited"))
    assert added.status_code == 302
    product = Product.objects.get(merchant=merchant, slug="sneaky")
    client.post(
        f"/merchant/shop/product/{product.pk}/change/",
        product_form_data(title="Audited v2", price="6.00"),
    )
    category = CategoryFactory(merchant=merchant, name="Old")
    client.post(f"/merchant/shop/category/{category.pk}/delete/", {"post": "yes"})
    add_keys(product, 2)
    key_ids = [
        str(pk) for pk in CardKey.objects.filter(product=product).values_list("pk", flat=True)
    ]
    client.post(
        "/merchant/shop/cardkey/",
        {"action": "void_selected", "_selected_action": key_ids, "index": "0"},
    )

    rows = list(AuditEntry.objects.order_by("pk").exclude(action__in=["login", "logout"]))
    assert [(r.action, r.object_type) for r in rows] == [
        ("add", "shop.product"),
        ("change", "shop.product"),
        ("delete", "shop.category"),
        ("action:void_selected", "shop.cardkey"),
    ]
    for row in rows:
        assert row.actor == merchant.owner
        assert row.actor_kind == AuditEntry.ActorKind.MERCHANT
        assert row.ip == "198.51.100.7"
        assert row.user_agent == AGENT
    assert rows[1].object_id == str(product.pk)
    assert "Price" in rows[1].changes or "price" in rows[1].changes.lower()
    assert rows[3].object_id == ",".join(key_ids)
    assert not Category.objects.filter(pk=category.pk).exists()


def test_staff_change_is_audited_as_staff():
    staff = UserFactory(username="ops", is_staff=True, is_superuser=True)
    product = ProductFactory()
    LogEntry.objects.log_actions(
        user_id=staff.pk, queryset=[product], action_flag=2, change_message="touched"
    )
    row = AuditEntry.objects.get(action="change")
    assert row.actor == staff
    assert row.actor_kind == AuditEntry.ActorKind.STAFF
    assert row.object_repr == str(product)[:200]
    assert row.changes == "touched"


def test_logins_and_logouts_are_audited():
    merchant = MerchantFactory()
    client = english_client(REMOTE_ADDR="192.0.2.10", HTTP_USER_AGENT=AGENT)
    client.post(
        "/merchant/login/",
        {"username": merchant.owner.username, "password": PASSWORD, "next": "/merchant/"},
    )
    client.post("/merchant/logout/")
    client.post("/admin/login/", {"username": "nobody", "password": "x", "next": "/admin/"})

    rows = list(AuditEntry.objects.order_by("pk").values_list("action", "actor_name", "ip"))
    assert rows == [
        ("login", merchant.owner.username, "192.0.2.10"),
        ("logout", merchant.owner.username, "192.0.2.10"),
        ("login_failed", "nobody", "192.0.2.10"),
    ]


def test_audit_log_is_read_only_in_the_staff_admin():
    staff = UserFactory(username="ops", is_staff=True, is_superuser=True)
    client = english_client()
    client.force_login(staff)
    verify_otp(client, staff)
    merchant = MerchantFactory()
    merchant_client(merchant).post("/merchant/shop/product/add/", product_form_data())
    entry = AuditEntry.objects.get(action="add")

    listing = client.get("/admin/audit/auditentry/")
    assert listing.status_code == 200
    assert "shop.product" in listing.content.decode()
    assert client.get("/admin/audit/auditentry/add/").status_code == 403
    detail = client.get(f"/admin/audit/auditentry/{entry.pk}/change/")
    assert detail.status_code == 200
    assert 'name="action"' not in detail.content.decode()  # no editable inputs
    assert (
        client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_custom_admin_views_are_audited_when_they_act():
    merchant = MerchantFactory()
    product = ProductFactory(merchant=merchant)
    client = merchant_client(merchant, ip="198.51.100.8")
    url = f"/merchant/shop/product/{product.pk}/import/"

    client.post(url, {"keys": ""})  # nothing to import: the form comes back, nothing happened
    assert not AuditEntry.objects.filter(action__startswith="view:").exists()

    response = client.post(url, {"keys": "AUDIT-1\nAUDIT-2\n"})
    assert response.status_code == 302

    row = AuditEntry.objects.get(action__startswith="view:")
    assert row.action == "view:shop_product_import"
    assert row.object_type == "merchant_admin"
    assert row.object_id == str(product.pk)
    assert (row.actor, row.actor_kind, row.ip) == (
        merchant.owner,
        AuditEntry.ActorKind.MERCHANT,
        "198.51.100.8",
    )
    # The keys themselves never reach the audit log.
    assert "AUDIT-1" not in f"{row.object_repr}{row.changes}"


def test_an_action_confirmation_page_is_not_audited_as_done():
    staff = UserFactory(username="ops2", is_staff=True, is_superuser=True)
    product = ProductFactory(review_status=Product.ReviewStatus.HELD)
    client = english_client(REMOTE_ADDR="192.0.2.20", HTTP_USER_AGENT=AGENT)
    client.force_login(staff)
    verify_otp(client, staff)

    page = client.post(
        "/admin/shop/product/",
        {"action": "reject_products", "_selected_action": [str(product.pk)], "index": "0"},
    )
    assert page.status_code == 200  # the page asking for a reason
    assert not AuditEntry.objects.filter(action="action:reject_products").exists()

    done = client.post(
        "/admin/shop/product/",
        {
            "action": "reject_products",
            "_selected_action": [str(product.pk)],
            "apply": "1",
            "reason": "counterfeit",
        },
    )
    assert done.status_code == 302
    assert AuditEntry.objects.get(action="action:reject_products").actor == staff
