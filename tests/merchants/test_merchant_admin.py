"""The merchant centre at /merchant/: a merchant's users see and change only their own store.

Two stores, Alpha (alice) and Bravo (bob), each with a category, products, an import batch of
keys, a paid manual order and an unfulfilled auto order, and a row of every other model
registered on the merchant site (dispute, withdrawal, webhooks, promotions, review, affiliate
programme, referral, a closed resale offer, and a listing and sale of a third store's offer).
Alice then tries every URL, action and lookup of every ModelAdmin registered on
``merchant_site`` against Bravo's rows. The per-model
tests iterate ``merchant_site._registry``, so a newly registered admin is covered (or the store
fixture fails, asking for a row of the new model) without editing this file.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Model
from django.test import Client, RequestFactory
from django.utils import timezone

from affiliates.models import Referral, ResaleListing, ResaleOffer, ResaleSale
from disputes.models import Dispute
from ledger.models import Withdrawal
from merchants.admin import MerchantScopedAdmin, merchant_site
from merchants.models import Merchant, MerchantMembership
from orders import services as order_services
from orders.models import Delivery, Order, OrderStatusChange
from promotions.models import Coupon, PriceTier
from reviews.models import Review
from shop.models import CardKey, Category, ImportBatch, Product
from tests.affiliates.helpers import enable_programme, listing, make_affiliate, offer
from tests.conftest import verify_otp
from tests.factories import CategoryFactory, MerchantFactory, ProductFactory, UserFactory, add_keys
from webhooks import services as webhook_services
from webhooks.models import NotificationSettings, WebhookDelivery

PASSWORD = "pw-for-tests-123"  # UserFactory's
MERCHANT_MODELS = sorted(merchant_site._registry, key=lambda model: model._meta.label)
OBJECT_ID = re.compile(r"<(?:\w+:)?object_id>")

# Everything a forged POST could carry: fields of every merchant form, the delete confirmation,
# the import view's keys and the manual delivery's content.
FORGED_POST = {
    "name": "Hijacked",
    "title": "Hijacked",
    "slug": "hijacked",
    "announcement": "Hijacked",
    "contact": "Hijacked",
    "sort_order": "0",
    "price": "0.01",
    "currency": "USD",
    "is_active": "on",
    "min_quantity": "1",
    "max_quantity": "1",
    "delivery_mode": "auto",
    "manual_fields": "[]",
    "status": "void",
    "post": "yes",
    "keys": "STOLEN-KEY-1\nSTOLEN-KEY-2\n",
    "content": "forged goods",
}


# --- the two stores --------------------------------------------------------------------------
@dataclass
class Store:
    merchant: Merchant
    user: Any
    category: Category
    product: Product  # auto delivery, in ``category``, stocked by ``batch``
    gizmo: Product  # auto delivery, its one key held by ``unfulfilled_order``
    service: Product  # manual delivery
    batch: ImportBatch
    keys: list[str]  # plaintexts of ``batch``, all free
    held_keys: list[str]
    paid_order: Order  # manual, awaiting the merchant's delivery
    unfulfilled_order: Order  # auto, paid but out of stock: retry_delivery would complete it
    markers: list[str] = field(default_factory=list)  # strings only this store's pages show


def _place(product: Product, *, email: str, status: str) -> Order:
    order = order_services.place_order(product=product, quantity=1, email=email).order
    Order.objects.filter(pk=order.pk).update(status=status, paid_at=timezone.now())
    order.refresh_from_db()
    return order


def build_supplier() -> ResaleOffer:
    """Charlie, a third store whose open resale offer both Alpha and Bravo list and sell."""
    charlie = MerchantFactory(name="Charlie Supplies", slug="charlie-supplies")
    card = ProductFactory(merchant=charlie, title="Charlie Gift Card", slug="charlie-gift")
    add_keys(card, 4, prefix="CHARLIE-SECRET")
    return offer(card, floor="1.00")


def build_store(name: str, username: str, supplier_offer: ResaleOffer) -> Store:
    lower = name.lower()
    merchant = MerchantFactory(
        name=f"{name} Store", slug=f"{lower}-store", owner=UserFactory(username=username)
    )
    category = CategoryFactory(merchant=merchant, name=f"{name} Category")
    product = ProductFactory(
        merchant=merchant, category=category, title=f"{name} Widget", slug=f"{lower}-widget"
    )
    gizmo = ProductFactory(merchant=merchant, title=f"{name} Gizmo", slug=f"{lower}-gizmo")
    service = ProductFactory(
        merchant=merchant,
        title=f"{name} Service",
        slug=f"{lower}-service",
        delivery_mode=Product.DeliveryMode.MANUAL,
    )
    keys = add_keys(product, 4, prefix=f"{name.upper()}-SECRET")
    held_keys = add_keys(gizmo, 1, prefix=f"{name.upper()}-HELD")
    paid_order = _place(service, email=f"buyer@{lower}.example", status=Order.Status.PAID)
    unfulfilled = _place(gizmo, email=f"buyer@{lower}.example", status=Order.Status.UNFULFILLED)
    # disputes: one per store, so the dispute admin is covered by every test below
    Dispute.objects.create(
        order=paid_order, reason=Dispute.Reason.OTHER, message=f"{name} dispute text"
    )
    Withdrawal.objects.create(
        merchant=merchant,
        amount=Decimal("123.45"),
        currency="CNY",
        payout_details=f"{name} bank account",
        requested_by=merchant.owner,
    )
    # webhooks: an endpoint with one (failed) delivery, and notification settings
    endpoint = webhook_services.create_endpoint(
        merchant=merchant, url=f"https://{lower}.example/hook", events=["order.paid"]
    )
    WebhookDelivery.objects.create(
        endpoint=endpoint,
        merchant=merchant,
        event="order.paid",
        event_key=f"order.paid:{paid_order.pk}",
        payload={"id": f"order.paid:{paid_order.pk}", "data": {"number": paid_order.number}},
        status=WebhookDelivery.Status.FAILED,
    )
    NotificationSettings.objects.create(merchant=merchant, telegram_chat_id=f"{name}-chat")
    # promotions: a coupon and a wholesale tier
    Coupon.objects.create(merchant=merchant, code=f"{name.upper()}10", value=Decimal("10"))
    PriceTier.objects.create(product=product, min_quantity=5, unit_price=Decimal("9.00"))
    # reviews: a review of the paid order (rows only; the service wants a delivered order)
    Review.objects.create(
        order=paid_order,
        merchant=merchant,
        product=service,
        rating=4,
        comment=f"{name} review text",
    )
    # affiliates: the programme, one referred order; the store's own resale offer (closed, so
    # the other store never sees it among the offers it could list), and its listing of
    # Charlie's open offer with one sale
    programme = enable_programme(merchant)
    Referral.objects.create(
        order=unfulfilled,
        affiliate=make_affiliate(f"{lower}-affiliate@affiliates.example"),
        merchant=merchant,
        commission_rate=programme.commission_rate,
        currency=unfulfilled.currency,
    )
    own_offer = offer(product, floor="1.00")
    ResaleOffer.objects.filter(pk=own_offer.pk).update(is_open=False)
    resale_listing: ResaleListing = listing(merchant, supplier_offer, price="2.00")
    resold = order_services.place_order(
        product=supplier_offer.product, quantity=1, email=f"resale@{lower}.example"
    ).order
    ResaleSale.objects.create(
        order=resold,
        listing=resale_listing,
        reseller=merchant,
        supplier=supplier_offer.merchant,
        unit_price=Decimal("2.00"),
        supplier_unit_price=supplier_offer.floor_price,
    )
    store = Store(
        merchant=merchant,
        user=merchant.owner,
        category=category,
        product=product,
        gizmo=gizmo,
        service=service,
        batch=ImportBatch.objects.get(product=product),
        keys=keys,
        held_keys=held_keys,
        paid_order=paid_order,
        unfulfilled_order=unfulfilled,
    )
    store.markers = [
        merchant.name,
        merchant.slug,
        category.name,
        product.title,
        gizmo.title,
        service.title,
        paid_order.number,
        unfulfilled.number,
        resold.number,  # Charlie's order, sold through this store's listing
        f"buyer@{lower}.example",
        f"{name} bank account",
        f"{name} dispute text",
        f"{name} review text",
        *keys,
        *held_keys,
    ]
    # Every registered model has a row of this store, titled by its ``str()``.
    for model in MERCHANT_MODELS:
        rows = list(rows_of(model, merchant))
        assert rows, f"the store fixture has no {model._meta.label}; add one to build_store()"
        store.markers.extend(str(row) for row in rows)
    return store


def english_client() -> Client:
    """Messages asserted below are English; pin it whatever the default language becomes."""
    return Client(headers={"Accept-Language": "en"})


def rows_of(model: type[Model], merchant: Merchant):
    lookup = merchant_site._registry[model].merchant_lookup
    return model._default_manager.filter(**{lookup: merchant.pk}).order_by("pk")


def snapshot(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every row of the store in every registered model, plus its deliveries and order audit."""

    def plain(row: dict[str, Any]) -> dict[str, Any]:
        return {k: bytes(v) if isinstance(v, memoryview) else v for k, v in row.items()}

    data = {
        model._meta.label: [plain(row) for row in rows_of(model, store.merchant).values()]
        for model in MERCHANT_MODELS
    }
    data["deliveries"] = list(
        Delivery.objects.filter(order__merchant=store.merchant).order_by("pk").values()
    )
    data["status_changes"] = list(
        OrderStatusChange.objects.filter(order__merchant=store.merchant).order_by("pk").values()
    )
    return data


def assert_no_markers(store: Store, content: bytes | str, where: str) -> None:
    text = content.decode() if isinstance(content, bytes) else content
    leaked = [marker for marker in store.markers if marker in text]
    assert not leaked, f"{where} shows {store.merchant.name}'s {leaked}"


def admin_base(model: type[Model]) -> str:
    return f"/merchant/{model._meta.app_label}/{model._meta.model_name}/"


def label(model: type[Model]) -> str:
    return model._meta.label


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def supplier_offer(db) -> ResaleOffer:
    return build_supplier()


@pytest.fixture
def alpha(supplier_offer: ResaleOffer) -> Store:
    return build_store("Alpha", "alice", supplier_offer)


@pytest.fixture
def bravo(supplier_offer: ResaleOffer) -> Store:
    return build_store("Bravo", "bob", supplier_offer)


@pytest.fixture
def alice(alpha: Store, bravo: Store) -> Client:
    client = english_client()
    client.force_login(alpha.user)
    return client


# --- the registry itself -----------------------------------------------------------------------
def test_every_merchant_admin_is_scoped(alpha):
    request = RequestFactory().get("/merchant/")
    request.user = alpha.user
    assert {Merchant, Category, Product, CardKey, ImportBatch, Order} <= set(MERCHANT_MODELS)
    for model, model_admin in merchant_site._registry.items():
        assert isinstance(model_admin, MerchantScopedAdmin), label(model)
        for inline in model_admin.get_inline_instances(request):
            # MerchantScopedAdmin does not scope inlines' choices or saves: they stay read-only.
            assert not inline.has_add_permission(request, None), inline
            assert not inline.has_change_permission(request, None), inline
            assert not inline.has_delete_permission(request, None), inline


# --- 1. logging in and seeing one's own store --------------------------------------------------
def test_login_through_the_form_then_only_own_products(alpha, bravo):
    client = english_client()
    page = client.get("/merchant/login/?next=/merchant/")
    assert page.status_code == 200

    response = client.post(
        "/merchant/login/?next=/merchant/",
        {"username": "alice", "password": PASSWORD, "next": "/merchant/"},
    )

    assert response.status_code == 302
    assert response["Location"] == "/merchant/"
    index = client.get("/merchant/")
    assert index.status_code == 200
    assert_no_markers(bravo, index.content, "the merchant index")
    products = client.get(admin_base(Product))
    assert products.status_code == 200
    assert alpha.product.title in products.content.decode()
    assert_no_markers(bravo, products.content, "the product list")


def test_login_form_rejects_a_wrong_password(alpha):
    client = english_client()
    response = client.post(
        "/merchant/login/", {"username": "alice", "password": "wrong", "next": "/merchant/"}
    )
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("model", MERCHANT_MODELS, ids=label)
def test_changelist_shows_only_own_rows(model, alice, alpha, bravo):
    response = alice.get(admin_base(model))

    assert response.status_code == 200
    shown = {row.pk for row in response.context["cl"].queryset}
    assert shown == set(rows_of(model, alpha.merchant).values_list("pk", flat=True))
    assert shown, "positive control: alice's own rows are listed"
    content = response.content.decode()
    assert any(marker in content for marker in alpha.markers)
    assert_no_markers(bravo, content, f"{label(model)} changelist")


@pytest.mark.parametrize("model", MERCHANT_MODELS, ids=label)
def test_changelist_filters_popups_and_search_stay_in_own_store(model, alice, bravo):
    """Raw-id popups, search, and query-string filters naming Bravo's rows (through any relation
    to a merchant model) list nothing of Bravo's: they narrow the scoped queryset or are refused."""
    theirs = list(rows_of(model, bravo.merchant).values_list("pk", flat=True))
    queries = [
        "_popup=1&_to_field=id",
        "_popup=1&_to_field=id&q=Bravo",
        "q=Bravo",
        "o=-1",
        f"id__in={','.join(str(pk) for pk in theirs)}",
        f"pk={theirs[0]}",
    ]
    for f in model._meta.get_fields():
        if f.is_relation and f.concrete and f.related_model in merchant_site._registry:
            target = rows_of(f.related_model, bravo.merchant).first()
            queries += [f"{f.name}__id__exact={target.pk}", f"{f.name}={target.pk}"]
    for query in queries:
        response = alice.get(f"{admin_base(model)}?{query}", follow=True)
        assert response.status_code in (200, 400), (query, response.status_code)
        if response.status_code == 200:
            shown = {row.pk for row in response.context["cl"].queryset}
            assert not shown & set(theirs), query
        assert_no_markers(bravo, response.content, f"{label(model)} changelist ?{query}")


# --- 2. no URL, action or lookup reaches another merchant's rows -------------------------------
@pytest.mark.parametrize("model", MERCHANT_MODELS, ids=label)
def test_no_object_url_reaches_another_merchants_rows(model, alice, alpha, bravo):
    model_admin = merchant_site._registry[model]
    routes = [str(p.pattern) for p in model_admin.get_urls() if OBJECT_ID.search(str(p.pattern))]
    assert {
        "<path:object_id>/change/",
        "<path:object_id>/delete/",
        "<path:object_id>/history/",
    } <= set(routes)
    base = admin_base(model)
    own = rows_of(model, alpha.merchant).first()
    control = alice.get(f"{base}{own.pk}/change/")
    assert control.status_code == 200, "positive control: alice opens her own row"
    assert str(own) in control.content.decode()
    # Her own forms offer none of Bravo's rows as choices (category, listing, batch, ...).
    assert_no_markers(bravo, control.content, f"{label(model)} change form")
    if model_admin.has_add_permission(control.wsgi_request):
        add_page = alice.get(f"{base}add/")
        assert add_page.status_code == 200
        assert_no_markers(bravo, add_page.content, f"{label(model)} add form")

    content_type = ContentType.objects.get_for_model(model)
    before = snapshot(bravo)
    for row in rows_of(model, bravo.merchant):
        urls = [base + OBJECT_ID.sub(str(row.pk), route) for route in routes]
        urls.append(f"/merchant/r/{content_type.pk}/{row.pk}/")
        for url in urls:
            for method in ("get", "post"):
                response = alice.get(url) if method == "get" else alice.post(url, FORGED_POST)
                where = f"{method.upper()} {url}"
                assert response.status_code in (302, 403, 404), (where, response.status_code)
                assert_no_markers(bravo, response.content, where)
                if response.status_code == 302:
                    assert not response["Location"].startswith("/merchant/login/"), where
                    landing = alice.get(response["Location"], follow=True)
                    assert landing.status_code in (200, 403, 404), where
                    assert_no_markers(bravo, landing.content, f"{where} → {response['Location']}")
    assert snapshot(bravo) == before


@pytest.mark.parametrize("model", MERCHANT_MODELS, ids=label)
def test_actions_with_another_merchants_ids_touch_nothing(model, alice, bravo):
    request = RequestFactory().get(admin_base(model))
    request.user = get_user_model().objects.get(username="alice")
    actions = merchant_site._registry[model].get_actions(request)
    theirs = [str(pk) for pk in rows_of(model, bravo.merchant).values_list("pk", flat=True)]

    before = snapshot(bravo)
    for name in actions:
        response = alice.post(
            admin_base(model),
            {"action": name, "_selected_action": theirs, "index": "0", "post": "yes"},
        )
        assert response.status_code in (200, 302, 403), (name, response.status_code)
        assert_no_markers(bravo, response.content, f"{label(model)} action {name}")
    assert snapshot(bravo) == before


def test_the_expected_actions_are_offered(alpha):
    request = RequestFactory().get("/merchant/")
    request.user = alpha.user
    offered = {
        model: set(merchant_site._registry[model].get_actions(request)) for model in MERCHANT_MODELS
    }
    assert "void_selected" in offered[CardKey]
    assert {"export_unsold", "void_unsold"} <= offered[ImportBatch]
    assert "retry_delivery" in offered[Order]
    assert "delete_selected" in offered[Category]
    assert "delete_selected" not in offered[Product]


def _post_action(client: Client, model, name: str, ids: list[int]):
    return client.post(
        admin_base(model),
        {"action": name, "_selected_action": [str(pk) for pk in ids], "index": "0"},
    )


def test_void_keys_action_voids_only_own_keys(alice, alpha, bravo):
    own = list(CardKey.objects.filter(batch=alpha.batch).values_list("pk", flat=True))
    theirs = list(CardKey.objects.filter(batch=bravo.batch).values_list("pk", flat=True))

    response = _post_action(alice, CardKey, "void_selected", own[:2] + theirs)

    assert response.status_code == 302
    assert CardKey.objects.filter(pk__in=own[:2], status=CardKey.Status.VOID).count() == 2
    assert not CardKey.objects.filter(pk__in=theirs).exclude(status=CardKey.Status.AVAILABLE)


def test_export_csv_of_another_merchants_batch_is_empty(alice, bravo):
    response = _post_action(alice, ImportBatch, "export_unsold", [bravo.batch.pk])

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows == [["id", "key"]]
    assert_no_markers(bravo, response.content, "the CSV export")


def test_export_csv_of_own_batch_contains_own_plaintexts_only(alice, alpha, bravo):
    response = _post_action(alice, ImportBatch, "export_unsold", [alpha.batch.pk, bravo.batch.pk])

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["id", "key"]
    assert sorted(key for _id, key in rows[1:]) == sorted(alpha.keys)
    assert_no_markers(bravo, response.content, "the CSV export")


def test_void_batch_action_spares_another_merchants_batch(alice, alpha, bravo):
    response = _post_action(alice, ImportBatch, "void_unsold", [alpha.batch.pk, bravo.batch.pk])

    assert response.status_code == 302
    assert set(CardKey.objects.filter(batch=alpha.batch).values_list("status", flat=True)) == {
        CardKey.Status.VOID
    }
    assert set(CardKey.objects.filter(batch=bravo.batch).values_list("status", flat=True)) == {
        CardKey.Status.AVAILABLE
    }


def test_retry_delivery_action_delivers_only_own_orders(alice, alpha, bravo):
    ids = [alpha.unfulfilled_order.pk, bravo.unfulfilled_order.pk]

    response = _post_action(alice, Order, "retry_delivery", ids)

    assert response.status_code == 302
    alpha.unfulfilled_order.refresh_from_db()
    bravo.unfulfilled_order.refresh_from_db()
    assert alpha.unfulfilled_order.status == Order.Status.DELIVERED  # positive control
    assert bravo.unfulfilled_order.status == Order.Status.UNFULFILLED
    assert not Delivery.objects.filter(order=bravo.unfulfilled_order).exists()


def test_import_into_another_merchants_product_is_refused(alice, bravo):
    before = snapshot(bravo)
    url = f"{admin_base(Product)}{bravo.product.pk}/import/"

    page = alice.get(url)
    posted = alice.post(url, {"keys": "STOLEN-1\nSTOLEN-2\n"})
    upload = alice.post(url, {"file": SimpleUploadedFile("k.txt", b"STOLEN-3\n")})

    for response in (page, posted, upload):
        assert response.status_code in (302, 403, 404)
        assert_no_markers(bravo, response.content, "the import view")
    assert snapshot(bravo) == before
    assert ImportBatch.objects.filter(product=bravo.product).count() == 1


def test_deliver_view_refuses_another_merchants_order(alice, alpha, bravo):
    url = f"{admin_base(Order)}{bravo.paid_order.pk}/deliver/"

    page = alice.get(url)
    posted = alice.post(url, {"content": "forged goods"})

    for response in (page, posted):
        assert response.status_code in (302, 403, 404)
        assert_no_markers(bravo, response.content, "the deliver view")
    bravo.paid_order.refresh_from_db()
    assert bravo.paid_order.status == Order.Status.PAID
    assert not Delivery.objects.filter(order=bravo.paid_order).exists()


def test_deliver_view_delivers_own_paid_manual_order(alice, alpha):
    url = f"{admin_base(Order)}{alpha.paid_order.pk}/deliver/"

    assert alice.get(url).status_code == 200
    response = alice.post(url, {"content": "ACCOUNT: alpha-1"})

    assert response.status_code == 302
    alpha.paid_order.refresh_from_db()
    assert alpha.paid_order.status == Order.Status.DELIVERED
    assert Delivery.objects.filter(order=alpha.paid_order, delivered_by=alpha.user).exists()


def _relations_to_merchant_models():
    """Every forward relation, of any installed model, to a model registered on merchant_site:
    the (app_label, model_name, field_name) triples an autocomplete request can name."""
    for model in apps.get_models():
        for f in model._meta.get_fields():
            if f.is_relation and f.concrete and f.related_model in merchant_site._registry:
                yield model._meta.app_label, model._meta.model_name, f.name, f.related_model


def test_autocomplete_never_returns_another_merchants_rows(alice, alpha, bravo):
    relations = list(_relations_to_merchant_models())
    assert relations
    answered = 0
    for app_label, model_name, field_name, target in relations:
        theirs = {str(pk) for pk in rows_of(target, bravo.merchant).values_list("pk", flat=True)}
        for term in ("", "Bravo", "bravo", "Widget", "2"):
            response = alice.get(
                "/merchant/autocomplete/",
                {
                    "app_label": app_label,
                    "model_name": model_name,
                    "field_name": field_name,
                    "term": term,
                },
            )
            where = f"autocomplete {app_label}.{model_name}.{field_name} term={term!r}"
            assert response.status_code in (200, 403, 404), (where, response.status_code)
            assert_no_markers(bravo, response.content, where)
            if response.status_code == 200:
                answered += 1
                ids = {result["id"] for result in json.loads(response.content)["results"]}
                assert not ids & theirs, where
    assert answered, "positive control: some autocomplete answered"
    # Alice's own products are found (so the empty answers above are not vacuous).
    response = alice.get(
        "/merchant/autocomplete/",
        {"app_label": "shop", "model_name": "cardkey", "field_name": "product", "term": "Widget"},
    )
    assert [r["id"] for r in json.loads(response.content)["results"]] == [str(alpha.product.pk)]


def product_form_data(**overrides: str) -> dict[str, str]:
    data = {
        "title": "Sneaky",
        "slug": "sneaky",
        "variant_of": "",
        "variant_label": "",
        "category": "",
        "description": "",
        "how_to_use": "",
        "price": "5.00",
        "currency": "CNY",
        "is_active": "on",
        "min_quantity": "1",
        "max_quantity": "5",
        "delivery_mode": "auto",
        "reusable_cap": "",
        "manual_fields": "[]",
        "sort_order": "0",
    }
    return {**data, **overrides}


def test_product_form_rejects_another_merchants_category_and_listing(alice, alpha, bravo):
    add = f"{admin_base(Product)}add/"

    response = alice.post(add, product_form_data(category=str(bravo.category.pk)))

    assert response.status_code == 200
    assert "category" in response.context["adminform"].form.errors
    assert not Product.objects.filter(slug="sneaky").exists()

    response = alice.post(
        add, product_form_data(variant_of=str(bravo.product.pk), variant_label="x")
    )
    assert response.status_code == 200
    assert "variant_of" in response.context["adminform"].form.errors
    assert not Product.objects.filter(slug="sneaky").exists()

    # Positive control: her own category is accepted and the product lands in her store,
    # whatever merchant a forged field names.
    response = alice.post(
        add,
        product_form_data(category=str(alpha.category.pk), merchant=str(bravo.merchant.pk)),
    )
    assert response.status_code == 302
    created = Product.objects.get(slug="sneaky")
    assert (created.merchant, created.category) == (alpha.merchant, alpha.category)


def test_changing_own_product_cannot_move_it_or_use_another_stores_category(alice, alpha, bravo):
    url = f"{admin_base(Product)}{alpha.product.pk}/change/"
    data = product_form_data(
        title="Alpha Widget Renamed", slug=alpha.product.slug, merchant=str(bravo.merchant.pk)
    )

    response = alice.post(url, {**data, "category": str(bravo.category.pk)})
    assert response.status_code == 200
    assert "category" in response.context["adminform"].form.errors
    alpha.product.refresh_from_db()
    assert alpha.product.category == alpha.category

    response = alice.post(url, {**data, "category": str(alpha.category.pk)})
    assert response.status_code == 302, response.context["adminform"].form.errors
    alpha.product.refresh_from_db()
    assert alpha.product.title == "Alpha Widget Renamed"
    assert alpha.product.merchant == alpha.merchant


def test_new_category_belongs_to_own_store(alice, alpha, bravo):
    response = alice.post(
        f"{admin_base(Category)}add/",
        {"name": "Fresh", "sort_order": "3", "merchant": str(bravo.merchant.pk)},
    )

    assert response.status_code == 302
    assert Category.objects.get(name="Fresh").merchant == alpha.merchant


def test_clash_with_own_slug_or_category_name_is_a_form_error_but_other_stores_do_not_clash(
    alice, alpha, bravo
):
    """Per-store unique constraints include the merchant, which is not a form field; the form
    still validates them (a clash used to be an IntegrityError, a 500)."""
    clash = alice.post(f"{admin_base(Product)}add/", product_form_data(slug=alpha.product.slug))
    assert clash.status_code == 200
    assert clash.context["adminform"].form.errors
    clash = alice.post(f"{admin_base(Category)}add/", {"name": alpha.category.name})
    assert clash.status_code == 200
    assert clash.context["adminform"].form.errors

    # Bravo's slug and category name are free in Alpha's store (and reveal nothing of Bravo).
    same_as_bravo = alice.post(
        f"{admin_base(Product)}add/", product_form_data(slug=bravo.product.slug)
    )
    assert same_as_bravo.status_code == 302
    same_as_bravo = alice.post(
        f"{admin_base(Category)}add/", {"name": bravo.category.name, "sort_order": "0"}
    )
    assert same_as_bravo.status_code == 302
    assert Product.objects.get(slug=bravo.product.slug, merchant=alpha.merchant)
    assert Category.objects.get(name=bravo.category.name, merchant=alpha.merchant)


# --- 3. plaintext keys stay out of the pages --------------------------------------------------
def test_plaintext_keys_never_rendered_in_admin_pages(alice, alpha):
    pages = [
        admin_base(CardKey),
        f"{admin_base(CardKey)}?status__exact=available",
        f"{admin_base(CardKey)}?batch__id__exact={alpha.batch.pk}",
        admin_base(ImportBatch),
        f"{admin_base(ImportBatch)}{alpha.batch.pk}/change/",
        admin_base(Product),
        f"{admin_base(Product)}{alpha.product.pk}/change/",
        f"{admin_base(Product)}{alpha.product.pk}/import/",
        f"{admin_base(Order)}{alpha.unfulfilled_order.pk}/change/",
    ]
    own_keys = CardKey.objects.filter(merchant=alpha.merchant).values_list("pk", flat=True)
    pages += [f"{admin_base(CardKey)}{pk}/change/" for pk in own_keys]
    for page in pages:
        response = alice.get(page)
        assert response.status_code == 200, page
        content = response.content.decode()
        shown = [key for key in alpha.keys + alpha.held_keys if key in content]
        assert not shown, f"{page} shows plaintext keys {shown}"


# --- 4. who gets in ---------------------------------------------------------------------------
def test_non_member_cannot_enter_the_merchant_centre(alpha, bravo):
    stranger = UserFactory(username="stranger")
    client = english_client()
    client.force_login(stranger)

    for url in ("/merchant/", admin_base(Product), f"{admin_base(Product)}{alpha.product.pk}/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/merchant/login/")

    form_login = english_client().post(
        "/merchant/login/", {"username": "stranger", "password": PASSWORD, "next": "/merchant/"}
    )
    assert form_login.status_code == 200
    assert "does not belong to a merchant" in form_login.content.decode()
    assert "_auth_user_id" not in form_login.client.session


def test_anonymous_is_sent_to_the_login_page(alpha):
    response = english_client().get(admin_base(Product))
    assert response.status_code == 302
    assert response["Location"].startswith("/merchant/login/")


def test_inactive_member_cannot_enter(alpha):
    alpha.user.is_active = False
    alpha.user.save()
    client = english_client()
    client.force_login(alpha.user)

    assert client.get("/merchant/").status_code == 302
    login = english_client().post(
        "/merchant/login/", {"username": "alice", "password": PASSWORD, "next": "/merchant/"}
    )
    assert login.status_code == 200
    assert "_auth_user_id" not in login.client.session


@pytest.mark.parametrize("status", [Merchant.Status.PENDING, Merchant.Status.SUSPENDED])
def test_pending_and_suspended_merchants_still_reach_their_own_store(status, alpha, bravo):
    """merchant_for_user admits any member whatever the store's status: a pending store prepares
    its catalogue, a suspended one sees its orders. The scoping is the same."""
    Merchant.objects.filter(pk=alpha.merchant.pk).update(status=status)
    client = english_client()
    client.force_login(alpha.user)

    response = client.get(admin_base(Product))

    assert response.status_code == 200
    assert alpha.product.title in response.content.decode()
    assert_no_markers(bravo, response.content, f"a {status} store's product list")
    login = english_client().post(
        "/merchant/login/", {"username": "alice", "password": PASSWORD, "next": "/merchant/"}
    )
    assert login.status_code == 302


def test_staff_member_of_a_merchant_sees_that_store(alpha, bravo):
    clerk = UserFactory(username="clerk")
    MerchantMembership.objects.create(
        user=clerk, merchant=alpha.merchant, role=MerchantMembership.Role.STAFF
    )
    client = english_client()
    client.force_login(clerk)

    response = client.get(admin_base(Order))

    assert response.status_code == 200
    assert alpha.paid_order.number in response.content.decode()
    assert_no_markers(bravo, response.content, "a clerk's order list")


def test_merchant_user_cannot_enter_the_staff_admin(alice):
    for url in ("/admin/", "/admin/shop/product/", "/admin/shop/cardkey/"):
        response = alice.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_staff_superuser_sees_every_store_at_admin_but_not_the_merchant_centre(alpha, bravo):
    root = get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    client = english_client()
    client.force_login(root)
    verify_otp(client, root)

    response = client.get("/admin/shop/product/")
    assert response.status_code == 200
    content = response.content.decode()
    assert alpha.product.title in content
    assert bravo.product.title in content

    # Platform staff are not members of a store; the merchant centre is not theirs.
    assert client.get("/merchant/").status_code == 302


# --- 5. importing keys ------------------------------------------------------------------------
def test_import_pasted_keys_reports_counts(alice, alpha, settings):
    settings.CARD_KEY_MAX_LENGTH = 30
    url = f"{admin_base(Product)}{alpha.product.pk}/import/"
    page = alice.get(url)
    assert page.status_code == 200
    assert alpha.product.title in page.content.decode()

    pasted = "NEW-1\n  NEW-2  \n\nNEW-1\n" + alpha.keys[0] + "\n" + "X" * 31 + "\n"
    response = alice.post(url, {"keys": pasted}, follow=True)

    assert response.redirect_chain[0] == (f"{admin_base(Product)}{alpha.product.pk}/change/", 302)
    assert "Imported 2, skipped 2 duplicates, rejected 1." in " ".join(messages_of(response))
    batch = ImportBatch.objects.filter(product=alpha.product).latest("created_at")
    assert (batch.imported_count, batch.duplicate_count, batch.rejected_count) == (2, 2, 1)
    assert batch.source == ImportBatch.Source.PASTE
    assert batch.created_by == alpha.user
    assert batch.merchant == alpha.merchant
    assert batch.rejected_lines == [6]
    assert CardKey.objects.filter(batch=batch).count() == 2


def test_import_uploaded_txt_file(alice, alpha):
    url = f"{admin_base(Product)}{alpha.product.pk}/import/"
    upload = SimpleUploadedFile(
        "keys.txt", b"FILE-1\r\nFILE-2\nFILE-3\n", content_type="text/plain"
    )

    response = alice.post(url, {"file": upload}, follow=True)

    assert "Imported 3, skipped 0 duplicates, rejected 0." in " ".join(messages_of(response))
    batch = ImportBatch.objects.filter(product=alpha.product).latest("created_at")
    assert (batch.source, batch.file_name, batch.imported_count) == (
        ImportBatch.Source.UPLOAD,
        "keys.txt",
        3,
    )


def test_import_rejects_other_file_types_and_empty_forms(alice, alpha):
    url = f"{admin_base(Product)}{alpha.product.pk}/import/"
    batches = ImportBatch.objects.count()

    wrong_type = alice.post(url, {"file": SimpleUploadedFile("keys.exe", b"K-1\n")})
    empty = alice.post(url, {"keys": ""})
    binary = alice.post(url, {"file": SimpleUploadedFile("keys.txt", b"K\x00\xff\n")})

    for response in (wrong_type, empty, binary):
        assert response.status_code == 200
        assert response.context["form"].errors
    assert ImportBatch.objects.count() == batches


def test_import_into_a_manual_product_is_refused_with_a_message(alice, alpha):
    url = f"{admin_base(Product)}{alpha.service.pk}/import/"

    response = alice.post(url, {"keys": "K-1\n"})

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert not CardKey.objects.filter(product=alpha.service).exists()
