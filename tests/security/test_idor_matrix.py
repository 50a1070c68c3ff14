"""IDOR matrix: every merchant-admin URL and object id of merchant B, requested as merchant A, is
refused; the same for buyers' order tokens.

1. Merchant centre (/merchant/). Two stores, Alpha (A) and Bravo (B), each with rows of every
   model registered on ``merchant_site`` (products and variants, categories, card keys, import
   batches, orders, disputes, withdrawals, reviews, coupons, price tiers, the affiliate
   programme, referrals, resale offers, listings and sales, webhook endpoints and deliveries,
   notification settings), written through the real services: checkout, signed sandbox
   payment, delivery, settlement, withdrawal request, dispute with a screenshot, and so on. The
   cases are derived from ``merchant_site._registry`` at collection:

   - every route of every ModelAdmin's ``get_urls()`` that takes an object id (change, delete,
     history, the bare-id redirect and custom views: key import, manual delivery, dispute
     answer, message and screenshot) plus the site's view-on-site shortcut, by GET and by a
     forged POST, with the id of every B row of that model. Each answer must be a refusal (403,
     404, or a redirect away that shows nothing of B), and no row of any table may change. The
     same route must open one of A's own rows (or refuse every merchant alike: delete where
     nothing may be deleted, view-on-site of a model without a public URL);
   - every admin action A is offered (and ``delete_selected``), POSTed with B's ids: the action
     is handed none of B's rows and nothing changes; with A's and B's ids it is handed A's;
   - every foreign-key and many-to-many field of A's own add and change forms offers none of
     B's rows, and A's form POSTed with B's id there is a form error on that field;
   - the admin's autocomplete, for every relation to a registered model, finds none of B's rows;
   - each ModelAdmin's changelist lists exactly A's rows;
   - the merchant-centre pages that are not one row's (changelists' custom pages such as the
     statement and the supplier report, analytics with every export, customers, the
     customer-note page keyed by ``?customer=``) with B's ids in the query string.

   New code cannot slip past: a model registered on the site without a row per store fails the
   fixture; a route whose parameter the matrix cannot fill fails its case; a new site-level page
   under /merchant/ fails ``test_every_merchant_centre_page_is_known``.

2. Buyer order tokens. Two buyers, Ann (A) and Ben (B), with delivered orders at one store, and
   Cara (C) at another store, each disputed with a screenshot; Ben also has a pending order with
   an open payment. A's token with B's or C's dispute id or payment reference is 404 and shows
   nothing of theirs (and the other way round); forged tokens (one character changed, B's
   order number, the stored hash, the nonce, empty, ...) are 404 on every token URL (order
   page, key download, pay and hosted pay/payment status, data download, erasure, dispute
   pages, review), the list of which is checked against the URLconf; the order lookup with B's
   number and A's email finds nothing, and A's lookup grant does not open B's order.

The data is built once per module inside a rolled-back transaction (as ``TestCase`` does for
``setUpTestData``); each test runs in its own savepoint on top, so a leak in one case cannot
disturb the next. "Nothing changes" is a digest of every row of every project table (and the
many-to-many tables, and the admin log), taken in one query.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.models import F, Model
from django.forms import ModelChoiceField, ModelMultipleChoiceField
from django.http import HttpRequest
from django.test import Client, RequestFactory, TestCase, override_settings
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from affiliates import services as affiliate_services
from affiliates.models import Referral, ResaleListing, ResaleSale
from disputes import services as dispute_services
from disputes.models import Dispute, DisputeMessage
from ledger import services as ledger_services
from merchants import customers
from merchants import services as merchant_services
from merchants.admin import MerchantScopedAdmin, merchant_site
from merchants.models import CustomerNote, Merchant
from orders import selectors as order_selectors
from orders.models import Order, Payment
from promotions.models import Coupon
from reviews import services as review_services
from shop.models import Product
from tests.affiliates.helpers import enable_programme, listing, make_affiliate, offer
from tests.conftest import open_payment, place, verify_otp
from tests.disputes.factories import DeliveredOrder, delivered_order, gif_bytes, png_bytes
from tests.factories import CategoryFactory, MerchantFactory, ProductFactory, UserFactory, add_keys
from tests.promotions.conftest import CouponFactory, PriceTierFactory
from tests.test_helpers_payments import pay
from webhooks import services as webhook_services
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

REFUSED = (302, 403, 404)
PARAM = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")


def label(model: type[Model]) -> str:
    return model._meta.label


MERCHANT_MODELS: list[type[Model]] = sorted(merchant_site._registry, key=label)

# Everything a forged POST could carry: every merchant form's fields, the delete confirmation,
# the import view's keys, the manual delivery's content, the dispute answer and message, the
# review reply, the customer note. Foreign keys name B's own rows (``Store.forged_post``).
FORGED_POST = {
    "name": "Hijacked",
    "title": "Hijacked",
    "slug": "hijacked",
    "announcement": "Hijacked",
    "contact": "Hijacked",
    "sort_order": "0",
    "price": "0.01",
    "currency": "CNY",
    "is_active": "on",
    "min_quantity": "1",
    "max_quantity": "1",
    "delivery_mode": "auto",
    "manual_fields": "[]",
    "status": "void",
    "post": "yes",
    "keys": "STOLEN-KEY-1\nSTOLEN-KEY-2\n",
    "content": "forged goods",
    "action": "refund",
    "amount": "1.00",
    "message": "forged answer",
    "text": "forged message",
    "key_index": "1",
    "idempotency": "forged",
    "payout_details": "attacker wallet",
    "reply": "forged reply",
    "rating": "1",
    "comment": "forged comment",
    "code": "HIJACKED",
    "kind": "percent",
    "value": "99",
    "scope": "store",
    "unit_price": "0.01",
    "floor_price": "0.01",
    "is_open": "on",
    "enabled": "on",
    "commission_rate": "0.5000",
    "url": "https://attacker.example/hook",
    "events": "order.paid",
    "language": "en",
    "email_enabled": "on",
    "notify_every_order": "on",
    "telegram_chat_id": "666",
    "telegram_bot_token": "attacker-token",
    "clear_telegram_token": "on",
    "tags": "hijacked",
    "note": "hijacked note",
}


# --- shared helpers ------------------------------------------------------------------------------
# The audit log records every admin POST answered with a redirect, refused ones included (the
# attempt and the ids in its URL): a row there is the point of it, not a change of B's data.
NOT_SNAPSHOTTED = {"audit.AuditEntry"}


def _snapshot_models() -> list[type[Model]]:
    """Every table of the project's own apps (many-to-many tables included), and the admin's
    change log."""
    own = [
        model
        for model in apps.get_models(include_auto_created=True)
        if "site-packages" not in model._meta.app_config.path
        and label(model) not in NOT_SNAPSHOTTED
    ]
    return sorted({*own, LogEntry}, key=label)


SNAPSHOT_MODELS = _snapshot_models()


def _snapshot_sql() -> str:
    """One round trip: per table, its row count and an md5 of all its rows (as text, sorted)."""
    quote = connection.ops.quote_name
    digest = "SELECT %s, count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"
    # Table names come from the models' Meta, never from a request.
    return " UNION ALL ".join(
        f"{digest} FROM {quote(model._meta.db_table)} t" for model in SNAPSHOT_MODELS
    )


SNAPSHOT_SQL = _snapshot_sql()


def snapshot() -> dict[str, tuple[int, str]]:
    """Every row of every table in SNAPSHOT_MODELS, as a count and a digest per table."""
    with connection.cursor() as cursor:
        cursor.execute(SNAPSHOT_SQL, [label(model) for model in SNAPSHOT_MODELS])
        return {name: (count, digest) for name, count, digest in cursor.fetchall()}


def assert_unchanged(before: dict[str, tuple[int, str]], where: str) -> None:
    after = snapshot()
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, f"{where} changed {changed}"


def body_of(response) -> str:
    if getattr(response, "streaming", False):
        # Consuming the test client's wrapper closes the response (and the file) itself; a
        # second close() would fire request_finished and close the test's DB connection.
        data = b"".join(response.streaming_content)
    else:
        data = response.content
    return data.decode("utf-8", errors="replace")


def leaks(markers: list[str], text: str, *, echoed: tuple[str, ...] = ()) -> list[str]:
    """The markers ``text`` shows, case-insensitively, HTML entities decoded; a marker ending or
    starting in a digit does not match inside a longer number (``#5`` is not in ``#50``).
    ``echoed``: what the request itself sent (its URL, query values), cut out of the text
    first, so a page that repeats the search term back is not a leak."""
    text = html.unescape(text)
    for value in echoed:
        if value:
            text = re.sub(re.escape(value), " ", text, flags=re.IGNORECASE)
    found = []
    for marker in markers:
        if re.search(r"(?<!\d)" + re.escape(marker) + r"(?!\d)", text, flags=re.IGNORECASE):
            found.append(marker)
    return found


def english_client() -> Client:
    return Client(headers={"Accept-Language": "en"})


# --- one module-level transaction under both worlds ----------------------------------------------
@pytest.fixture(scope="module")
def module_db(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[None]:
    """Open a test-case transaction for the whole module (rolled back at its end), with a
    throw-away MEDIA_ROOT for the dispute screenshots. Each test's own ``db`` transaction
    nests inside it as a savepoint."""
    media = override_settings(MEDIA_ROOT=tmp_path_factory.mktemp("idor-media"))
    media.enable()
    with django_db_blocker.unblock():
        atomics = TestCase._enter_atomics()
        try:
            yield
        finally:
            TestCase._rollback_atomics(atomics)
            media.disable()


# =================================================================================================
# 1. merchant centre
# =================================================================================================
SHARED_BUYER = "shared@everyone.example"  # buys at both stores: each keeps its own customer


@dataclass
class Store:
    merchant: Merchant
    user: Any
    ids: dict[str, int]  # B's rows that a forged POST names in its foreign-key fields
    customer_keys: list[str]  # ``?customer=`` keys of the store's customers
    shared_key: str  # the shared buyer's key at this store
    first_buyer: str  # an address only this store's orders carry
    markers: list[str] = field(default_factory=list)  # strings only this store's pages show

    def rows(self, model: type[Model]):
        lookup = merchant_site._registry[model].merchant_lookup
        return model._default_manager.filter(**{lookup: self.merchant.pk}).order_by("pk")

    def forged_post(self) -> dict[str, str]:
        return {**FORGED_POST, **{name: str(pk) for name, pk in self.ids.items()}}


def build_supplier():
    """Charlie, a third store whose open resale offer both A and B list and sell."""
    charlie = MerchantFactory(name="Charlie Supplies", slug="charlie-supplies")
    card = ProductFactory(
        merchant=charlie, title="Charlie Gift Card", slug="charlie-gift", price=Decimal("50.00")
    )
    add_keys(card, 4, prefix="CHARLIE-SECRET")
    return offer(card, floor="40.00")


def build_store(name: str, *, supplier_offer, chat_id: str) -> Store:
    """A store with rows of every model registered on ``merchant_site``, written the way
    production writes them."""
    lower, upper = name.lower(), name.upper()
    buyers = f"{lower}-buyers.example"
    merchant = MerchantFactory(
        name=f"{name} Store",
        slug=f"{lower}-store",
        owner=UserFactory(username=f"{lower}-owner"),
        announcement=f"{name} announcement",
        contact=f"{lower}-contact@merchant.example",
    )
    owner = merchant.owner
    category = CategoryFactory(merchant=merchant, name=f"{name} Category")
    widget = ProductFactory(
        merchant=merchant,
        category=category,
        title=f"{name} Widget",
        slug=f"{lower}-widget",
        price=Decimal("200.00"),
        description=f"{name} widget description",
    )
    variant = ProductFactory(
        merchant=merchant,
        variant_of=widget,
        variant_label=f"{name} Deluxe",
        title=f"{name} Widget Deluxe",
        slug=f"{lower}-widget-deluxe",
    )
    service = ProductFactory(
        merchant=merchant,
        title=f"{name} Service",
        slug=f"{lower}-service",
        delivery_mode=Product.DeliveryMode.MANUAL,
    )
    keys = add_keys(widget, 6, prefix=f"{upper}-SECRET")
    keys += add_keys(variant, 2, prefix=f"{upper}-VARIANT")
    coupon = CouponFactory(merchant=merchant, code=f"{upper}SAVE10", products=[widget])
    PriceTierFactory(product=widget, min_quantity=5, unit_price=Decimal("190.00"))

    # Orders: delivered, disputed, one by the buyer both stores share, one awaiting manual
    # delivery, one brought by an affiliate.
    sold = delivered_order(widget, email=f"first@{buyers}")
    disputed = delivered_order(widget, email=f"second@{buyers}")
    shared = delivered_order(widget, email=SHARED_BUYER)
    manual = place(service, email=f"third@{buyers}").order
    assert pay(open_payment(manual)).status_code == 200
    manual.refresh_from_db()
    assert manual.status == Order.Status.PAID  # awaiting the merchant's delivery
    enable_programme(merchant)
    affiliate = make_affiliate(f"{lower}-affiliate@affiliates.example")
    referred = place(
        widget,
        email=f"referred@{buyers}",
        attach=affiliate_services.referral_attacher(code=affiliate.code),
    ).order
    assert pay(open_payment(referred)).status_code == 200
    assert Referral.objects.filter(order=referred, merchant=merchant).exists()

    # Reselling: the store's own offer (closed, so no other store may see it), and its listing
    # of Charlie's offer with one sale.
    own_offer = offer(widget, floor="150.00")
    own_offer.is_open = False
    own_offer.save(update_fields=["is_open"])
    resale_listing = listing(merchant, supplier_offer, price="45.00")
    resold = affiliate_services.checkout_resale(
        listing=resale_listing,
        quantity=1,
        email=f"resale@{buyers}",
        gateway_name="sandbox",
        base_url="http://testserver/",
    ).order
    assert ResaleSale.objects.filter(order=resold, reseller=merchant).exists()

    review = review_services.submit_review(
        order=sold.order, rating=4, comment=f"{name} review comment"
    )
    endpoint = webhook_services.create_endpoint(
        merchant=merchant,
        url=f"https://hooks.{lower}.example/cardvault",
        events=list(WebhookEvent.values),
    )
    # (Its deliveries are queued on commit, which this module's transaction never reaches.)
    assert webhook_services.emit_event(event="order.paid", object_id=sold.order.pk)
    telegram_token = f"{upper}-BOT-TOKEN-{chat_id}"
    webhook_services.save_notification_settings(
        merchant=merchant,
        language="en",
        email_enabled=True,
        notify_every_order=True,
        telegram_chat_id=chat_id,
        telegram_token=telegram_token,
    )

    # Money: the sales settle, then the merchant asks for part of it.
    ledger_services.settle_due_orders(now=timezone.now() + timedelta(days=30))
    withdrawal = ledger_services.request_withdrawal(
        merchant=merchant,
        amount=Decimal("150.00"),
        currency="CNY",
        payout_details=f"{name} bank account 0042",
        actor=owner,
    )
    dispute = dispute_services.open_dispute(
        order_id=disputed.order.pk,
        reason="key_invalid",
        message=f"{name} buyer complaint",
        key_index=1,
        screenshot=SimpleUploadedFile("s.png", png_bytes(), content_type="image/png"),
    )
    dispute_services.post_message(
        dispute_id=dispute.pk, role="merchant", text=f"{name} merchant reply", author=owner
    )

    paid_emails = set(
        Order.objects.filter(merchant=merchant, paid_at__isnull=False).values_list(
            "email", flat=True
        )
    )
    keys_of = {
        email: customers.customer_key(merchant_id=merchant.pk, buyer=email.lower())
        for email in paid_emails
    }
    merchant_services.save_customer_note(
        merchant=merchant,
        customer_key=keys_of[SHARED_BUYER],
        tags=f"{lower}-vip",
        note=f"{name} private note on the shared buyer",
        actor=owner,
    )

    store = Store(
        merchant=merchant,
        user=owner,
        ids={
            "product": widget.pk,
            "category": category.pk,
            "variant_of": widget.pk,
            "products": widget.pk,
            "order": sold.order.pk,
            "offer": own_offer.pk,
            "endpoint": endpoint.pk,
        },
        customer_keys=sorted(keys_of.values()),
        shared_key=keys_of[SHARED_BUYER],
        first_buyer=f"first@{buyers}",
    )
    store.markers = [
        name,  # "Bravo" in any case: no page of Alpha's may name Bravo at all
        merchant.slug,
        buyers,  # the buyers' addresses, masked or not
        f"{lower}-contact@merchant.example",
        *(o.number for o in (sold.order, disputed.order, shared.order, manual, referred)),
        resold.number,
        *keys,
        *(key.text for key in order_selectors.delivered_keys(order=sold.order)),
        withdrawal.payout_details,
        coupon.code,
        review.comment,
        endpoint.get_secret(),
        telegram_token,
        chat_id,
        affiliate.code,
        f"{lower}-vip",
        f"{name} private note",
        *store.customer_keys,
    ]
    for model in MERCHANT_MODELS:
        assert isinstance(merchant_site._registry[model], MerchantScopedAdmin), (
            f"{label(model)} is registered on merchant_site without MerchantScopedAdmin's scoping"
        )
        rows = list(store.rows(model))
        assert rows, (
            f"{label(model)} is registered on merchant_site but the IDOR fixture has no row of "
            f"it: add one to build_store() in {__name__}"
        )
        store.markers.extend(str(row) for row in rows)
    return store


@dataclass
class MerchantWorld:
    alpha: Store
    bravo: Store


@pytest.fixture(scope="module")
def merchant_world(module_db) -> MerchantWorld:
    supplier_offer = build_supplier()
    return MerchantWorld(
        alpha=build_store("Alpha", supplier_offer=supplier_offer, chat_id="-1001313"),
        bravo=build_store("Bravo", supplier_offer=supplier_offer, chat_id="-1004242"),
    )


@pytest.fixture
def alpha_client(merchant_world: MerchantWorld, db) -> Client:
    """Merchant A's owner, logged in and past the two-factor step."""
    client = english_client()
    client.force_login(merchant_world.alpha.user)
    verify_otp(client, merchant_world.alpha.user)
    return client


def admin_base(model: type[Model]) -> str:
    return f"/merchant/{model._meta.app_label}/{model._meta.model_name}/"


@dataclass(frozen=True)
class AdminRoute:
    model: type[Model]
    name: str  # the URL name's last word, or what the route is when it has none
    route: str  # relative to /merchant/, with <...> placeholders

    def url(self, row: Model) -> str:
        values = {
            "object_id": str(row.pk),
            "content_type_id": str(ContentType.objects.get_for_model(self.model).pk),
        }

        def fill(match: re.Match[str]) -> str:
            name = match["name"]
            if name not in values:
                pytest.fail(
                    f"/merchant/{self.route} takes <{name}>, which the IDOR matrix cannot fill: "
                    f"teach AdminRoute.url() what a B id for it is"
                )
            return values[name]

        return "/merchant/" + PARAM.sub(fill, self.route)


def model_prefix(model: type[Model]) -> str:
    return f"{model._meta.app_label}/{model._meta.model_name}/"


def object_routes() -> list[AdminRoute]:
    """Every id-taking route of every ModelAdmin on the merchant site, and the site's view-on-site
    shortcut per model."""
    found = []
    for model in MERCHANT_MODELS:
        for pattern in merchant_site._registry[model].get_urls():
            route = str(pattern.pattern)
            if PARAM.search(route):
                name = pattern.name or ("object" if route == "<path:object_id>/" else route)
                found.append(AdminRoute(model, name.split("_")[-1], model_prefix(model) + route))
        found.append(
            AdminRoute(model, "view_on_site", "r/<path:content_type_id>/<path:object_id>/")
        )
    return found


OBJECT_ROUTES = object_routes()
ADMIN_CASES = [
    pytest.param(route, id=f"{label(route.model)}-{route.name}") for route in OBJECT_ROUTES
]


def assert_refused(
    client: Client, response, where: str, bravo: Store, b_urls: set[str], followed: set[str]
) -> None:
    """A refusal: 403, 404, or a redirect that is not to the login page (the request was
    authenticated) and lands on a page that is not B's row and shows nothing of B. Each distinct
    landing is followed once per case (``followed``): they are the same page for every row."""
    assert response.status_code in REFUSED, f"{where} answered {response.status_code}"
    text = body_of(response)
    assert not response.get("Content-Type", "").startswith("image/"), where
    assert not response.has_header("Content-Disposition"), f"{where} sent a file"
    leaked = leaks(bravo.markers, text, echoed=(where,))
    assert not leaked, f"{where} shows Bravo's {leaked}"
    if response.status_code != 302:
        return
    location = response["Location"]
    assert not location.startswith("/merchant/login/"), f"{where}: not logged in (vacuous)"
    if location in b_urls:
        # The bare-id route redirects any id to its change page, which must then refuse.
        second = client.get(location)
        assert second.status_code in REFUSED, f"{where} → {location}: {second.status_code}"
        assert second.status_code != 302 or second["Location"] not in b_urls, where
        location = second["Location"] if second.status_code == 302 else ""
        if not location:
            return
    if location in followed:
        return
    followed.add(location)
    landing = client.get(location, follow=True)
    assert landing.status_code in (200, 403, 404), f"{where} → {location}"
    final = landing.request["PATH_INFO"]
    if landing.status_code == 200:
        assert final not in b_urls, f"{where} lands on Bravo's {final}"
    leaked = leaks(bravo.markers, body_of(landing), echoed=(where,))
    assert not leaked, f"{where} → {final} shows Bravo's {leaked}"


def request_as(store: Store) -> HttpRequest:
    """A bare request by the store's user, to ask its ModelAdmins what they offer."""
    request = RequestFactory().get("/merchant/")
    request.user = store.user
    return request


def refused_to_everyone(route: AdminRoute, store: Store) -> int | None:
    """The status every merchant gets on ``route``, for its own rows too; None when a merchant's
    own rows open there (then B's rows are refused by the scoping, not by a blanket refusal)."""
    model_admin = merchant_site._registry[route.model]
    if route.name == "delete" and not model_admin.has_delete_permission(request_as(store)):
        return 403  # the model cannot be deleted in the merchant centre at all
    if route.name == "view_on_site" and not hasattr(route.model, "get_absolute_url"):
        return 404  # contenttypes' shortcut: the model has no public URL
    return None


def own_urls(model: type[Model], row: Model) -> set[str]:
    base = admin_base(model)
    return {f"{base}{row.pk}/", f"{base}{row.pk}/change/"}


def assert_own_row_opens(client: Client, route: AdminRoute, store: Store) -> None:
    """Positive control: the route opens at least one of the store's own rows (200, or a
    redirect to the row's own page, as the dispute answer and message views do on a GET),
    unless it refuses every merchant's rows alike (delete where nothing may be deleted,
    view-on-site of a model without a public URL): then the own rows get exactly that refusal."""
    expected = refused_to_everyone(route, store)
    answers: dict[Any, tuple[int, str]] = {}
    for row in store.rows(route.model):
        response = client.get(route.url(row))
        body_of(response)
        location = response.get("Location", "")
        answers[row.pk] = (response.status_code, location)
        if expected is None and (
            response.status_code == 200
            or (response.status_code == 302 and location in own_urls(route.model, row))
        ):
            return
    assert expected is not None, f"no row of its own opens /merchant/{route.route}: {answers}"
    assert {status for status, _ in answers.values()} == {expected}, answers


@pytest.mark.parametrize("route", ADMIN_CASES)
def test_merchant_a_cannot_reach_merchant_bs_object(
    route: AdminRoute, merchant_world: MerchantWorld, alpha_client: Client
):
    """The route with each of B's ids, by GET and by a forged POST, is refused, shows nothing of
    B and changes nothing; the same route opens A's own row (or refuses everyone alike)."""
    alpha, bravo = merchant_world.alpha, merchant_world.bravo
    assert_own_row_opens(alpha_client, route, alpha)
    rows = list(bravo.rows(route.model))
    assert rows, f"no {label(route.model)} of Bravo's to try"
    base = admin_base(route.model)
    b_urls = {f"{base}{row.pk}/{suffix}" for row in rows for suffix in ("", "change/")}
    followed: set[str] = set()

    for method in ("get", "post"):
        before = snapshot()
        for row in rows:
            url = route.url(row)
            if method == "get":
                response = alpha_client.get(url)
            else:
                response = alpha_client.post(url, bravo.forged_post())
            where = f"{method.upper()} {url}"
            assert_refused(alpha_client, response, where, bravo, b_urls, followed)
        assert_unchanged(before, f"{method.upper()} /merchant/{route.route} with Bravo's ids")


@pytest.mark.parametrize("model", MERCHANT_MODELS, ids=label)
def test_positive_control_merchant_a_opens_its_own_rows(
    model: type[Model], merchant_world: MerchantWorld, alpha_client: Client
):
    """The refusals above are not an artefact of a broken login or a broken page."""
    own = merchant_world.alpha.rows(model).first()
    response = alpha_client.get(f"{admin_base(model)}{own.pk}/change/")
    assert response.status_code == 200
    assert str(own) in html.unescape(body_of(response))


@pytest.mark.parametrize("model", MERCHANT_MODELS, ids=label)
def test_changelist_of_merchant_a_has_none_of_bs_rows(
    model: type[Model], merchant_world: MerchantWorld, alpha_client: Client
):
    alpha, bravo = merchant_world.alpha, merchant_world.bravo
    theirs = set(bravo.rows(model).values_list("pk", flat=True))

    response = alpha_client.get(admin_base(model))

    assert response.status_code == 200
    shown = {row.pk for row in response.context["cl"].queryset}
    assert shown == set(alpha.rows(model).values_list("pk", flat=True))
    assert shown, "positive control: Alpha's own rows are listed"
    assert not shown & theirs
    leaked = leaks(bravo.markers, body_of(response))
    assert not leaked, f"{label(model)} changelist shows Bravo's {leaked}"


# --- admin actions with B's ids ------------------------------------------------------------------
@pytest.mark.parametrize("model", MERCHANT_MODELS, ids=label)
def test_admin_actions_never_act_on_merchant_bs_rows(
    model: type[Model],
    merchant_world: MerchantWorld,
    alpha_client: Client,
    monkeypatch: pytest.MonkeyPatch,
):
    """Every action A is offered on the model (and ``delete_selected``, offered or not), POSTed
    to A's changelist with B's ids (and again with the confirmation's ``post=yes``): the action
    function is handed none of B's rows, nothing changes, nothing of B is shown. Positive
    control: with A's and B's ids together, each offered action is handed exactly A's rows, and
    with ``select_across`` only A's."""
    alpha, bravo = merchant_world.alpha, merchant_world.bravo
    model_admin = merchant_site._registry[model]
    received: list[tuple[str, set[Any]]] = []
    offered_actions = model_admin.get_actions

    def recording_actions(request: HttpRequest) -> dict[str, Any]:
        def recorder(name: str, func: Any) -> Any:
            def recorded(modeladmin: Any, request: HttpRequest, queryset: Any) -> Any:
                received.append((name, set(queryset.values_list("pk", flat=True))))
                return func(modeladmin, request, queryset)

            return recorded

        return {
            name: (recorder(name, func), name_, description)
            for name, (func, name_, description) in offered_actions(request).items()
        }

    monkeypatch.setattr(model_admin, "get_actions", recording_actions)
    offered = list(offered_actions(request_as(alpha)))
    theirs = [str(pk) for pk in bravo.rows(model).values_list("pk", flat=True)]
    mine = set(alpha.rows(model).values_list("pk", flat=True))
    url = admin_base(model)

    for name in sorted({*offered, "delete_selected"}):
        where = f"action {name} on Bravo's {label(model)} {theirs}"
        before = snapshot()
        for confirm in ({}, {"post": "yes"}):
            response = alpha_client.post(
                url, {"action": name, "_selected_action": theirs, "index": "0", **confirm}
            )
            assert response.status_code in (200, 302), f"{where}: {response.status_code}"
            if response.status_code == 302:
                assert not response["Location"].startswith("/merchant/login/"), where
            leaked = leaks(bravo.markers, body_of(response))
            assert not leaked, f"{where} shows Bravo's {leaked}"
        handed = [pks for _, pks in received]
        assert not any(handed), f"{where}: the action was handed {handed}"
        assert_unchanged(before, where)

        if name not in offered:
            continue
        received.clear()
        mixed = alpha_client.post(
            url,
            {"action": name, "_selected_action": [*map(str, mine), *theirs], "index": "0"},
        )
        assert not leaks(bravo.markers, body_of(mixed)), f"{name} with A's and B's ids"
        assert received == [(name, mine)], f"positive control: {name} gets A's {mine}"
        received.clear()
        across = alpha_client.post(
            url,
            {"action": name, "_selected_action": theirs, "index": "0", "select_across": "1"},
        )
        assert not leaks(bravo.markers, body_of(across)), f"{name} across all"
        assert received and all(pks <= mine for _, pks in received), (name, received)
        received.clear()


# --- choices in A's own forms: no foreign key may name B's rows ---------------------------------
def owned_rows(store: Store, model: type[Model]) -> set[Any] | None:
    """The pks of ``model`` that belong to ``store``, or None for a model no store owns (users)."""
    if model in merchant_site._registry:
        return set(store.rows(model).values_list("pk", flat=True))
    if any(f.name == "merchant" for f in model._meta.concrete_fields):
        rows = model._default_manager.filter(merchant=store.merchant)
        return set(rows.values_list("pk", flat=True))
    return None


def own_form_pages(store: Store) -> list[str]:
    """A's add page of every model A may add to, and A's change page of every model's row."""
    request = request_as(store)
    pages = []
    for model in MERCHANT_MODELS:
        model_admin = merchant_site._registry[model]
        if model_admin.has_add_permission(request):
            pages.append(f"{admin_base(model)}add/")
        row = store.rows(model).first()
        pages.append(f"{admin_base(model)}{row.pk}/change/")
    return pages


def test_merchant_a_forms_offer_and_accept_none_of_bs_rows(
    merchant_world: MerchantWorld, alpha_client: Client
):
    """Every foreign-key and many-to-many field of every form A can open (add pages, change pages
    of A's own rows, their inlines) chooses among A's rows only (and some: the field is not
    vacuously empty); A's form POSTed with B's id in that field is a form error on that field
    and changes nothing."""
    alpha, bravo = merchant_world.alpha, merchant_world.bravo
    checked: list[str] = []
    for url in own_form_pages(alpha):
        page = alpha_client.get(url)
        assert page.status_code == 200, url
        forms = [page.context["adminform"].form]
        for inline in page.context.get("inline_admin_formsets", []):
            forms.extend([*inline.formset.forms, inline.formset.empty_form])
        for form in forms:
            for name, form_field in form.fields.items():
                if not isinstance(form_field, ModelChoiceField):
                    continue
                target = form_field.queryset.model
                where = f"{url} field {form.prefix or ''}{name} ({label(target)})"
                choices = set(form_field.queryset.values_list("pk", flat=True))
                theirs = owned_rows(bravo, target)
                if theirs is None:
                    continue
                assert theirs, f"{where}: Bravo has no {label(target)} to try"
                assert choices, f"{where}: no choices at all (vacuous)"
                assert not choices & theirs, f"{where} offers Bravo's {choices & theirs}"
                checked.append(where)
                if form is not forms[0]:
                    continue  # inline rows are read-only (test_merchant_admin checks that)
                forged = next(iter(sorted(theirs)))
                value: Any = (
                    [str(forged)]
                    if isinstance(form_field, ModelMultipleChoiceField)
                    else str(forged)
                )
                before = snapshot()
                response = alpha_client.post(url, {**alpha.forged_post(), name: value})
                assert response.status_code == 200, f"POST {where}={forged}: {response.status_code}"
                assert name in response.context["adminform"].form.errors, where
                assert not leaks(bravo.markers, body_of(response)), where
                assert_unchanged(before, f"POST {where}={forged}")
    assert len(checked) >= 6, f"positive control: too few choice fields checked: {checked}"


# --- the admin's autocomplete: no B rows whichever relation names them --------------------------
def relations_to_merchant_models() -> list[tuple[str, str, str, type[Model]]]:
    """Every forward relation, of any installed model, to a model registered on merchant_site:
    the (app_label, model_name, field_name) an autocomplete request can name."""
    return [
        (model._meta.app_label, model._meta.model_name or "", f.name, f.related_model)
        for model in apps.get_models()
        for f in model._meta.get_fields()
        if f.is_relation and f.concrete and f.related_model in merchant_site._registry
    ]


def test_autocomplete_offers_none_of_bs_rows(merchant_world: MerchantWorld, alpha_client: Client):
    alpha, bravo = merchant_world.alpha, merchant_world.bravo
    answered: dict[tuple[str, str, str], set[str]] = {}
    for app_label, model_name, field_name, target in relations_to_merchant_models():
        theirs = {str(pk) for pk in bravo.rows(target).values_list("pk", flat=True)}
        for term in ("", "Bravo"):
            query = {
                "app_label": app_label,
                "model_name": model_name,
                "field_name": field_name,
                "term": term,
            }
            response = alpha_client.get("/merchant/autocomplete/", query)
            where = f"autocomplete {app_label}.{model_name}.{field_name} term={term!r}"
            assert response.status_code in (200, 403, 404), f"{where}: {response.status_code}"
            assert not leaks(bravo.markers, body_of(response), echoed=(term,)), where
            if response.status_code == 200:
                ids = {str(result["id"]) for result in response.json()["results"]}
                assert not ids & theirs, f"{where} offers Bravo's {ids & theirs}"
                answered.setdefault((app_label, model_name, field_name), set()).update(ids)
    own_products = {str(pk) for pk in alpha.rows(Product).values_list("pk", flat=True)}
    assert answered.get(("shop", "cardkey", "product"), set()) & own_products, (
        "positive control: A's own products are found"
    )


# --- merchant-centre pages that are not one row's ------------------------------------------------
DJANGO_SITE_VIEWS = {
    "index",
    "login",
    "logout",
    "password_change",
    "password_change_done",
    "autocomplete",  # test_autocomplete_offers_none_of_bs_rows
    "jsi18n",
    "view_on_site",  # in the matrix above
    "app_list",  # /merchant/<app_label>/: no object id
}
# The project's own site pages, with the query strings that make them show something else.
SITE_PAGES = {
    "merchants_analytics": [
        "",
        *(f"export={name}" for name in ("orders", "daily", "top", "funnel", "rates", "stock")),
        "days=3650&export=orders",
    ],
    "merchants_customers": ["", "export=csv", "sort=orders", "tag=bravo-vip"],
    # merchants_customer_note takes ``?customer=<key>``: test_customer_note_of_b_is_refused
    "merchants_customer_note": [],
}


def test_every_merchant_centre_page_is_known():
    """A new page under /merchant/ (a site view, or anything else mounted there) must be added
    to this matrix: this test names it."""
    model_prefixes = {model_prefix(m) for m in MERCHANT_MODELS}
    for pattern in merchant_site.get_urls():
        route = str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            assert route in model_prefixes, f"/merchant/{route} is not a registered ModelAdmin"
        elif pattern.name is None:
            assert route == "(?P<url>.*)$", f"/merchant/{route}: unnamed, unknown page"
        else:
            assert pattern.name in DJANGO_SITE_VIEWS | set(SITE_PAGES), (
                f"/merchant/{route} ({pattern.name}) is new: add it to the IDOR matrix"
            )
    for pattern in get_resolver().url_patterns:
        route = str(pattern.pattern)
        if route.lstrip("^").startswith("merchant"):
            assert isinstance(pattern, URLResolver), route
            assert pattern.namespace == merchant_site.name, route


def test_matrix_covers_every_object_route_of_every_merchant_admin():
    covered = {(route.model, route.route) for route in OBJECT_ROUTES}
    for model in MERCHANT_MODELS:
        routes = {str(p.pattern) for p in merchant_site._registry[model].get_urls()}
        assert {
            "<path:object_id>/change/",
            "<path:object_id>/delete/",
            "<path:object_id>/history/",
        } <= routes, label(model)
        for route in routes:
            if PARAM.search(route):
                assert (model, model_prefix(model) + route) in covered, (label(model), route)
    assert len(ADMIN_CASES) == len(OBJECT_ROUTES)


def page_cases() -> list[Any]:
    """Every page under /merchant/ without an object id in its path: each ModelAdmin's changelist,
    add page and custom pages (statement, report, ...), the site's index, app indexes and
    project pages."""
    cases = []
    for model in MERCHANT_MODELS:
        for pattern in merchant_site._registry[model].get_urls():
            route = str(pattern.pattern)
            if not PARAM.search(route) and pattern.name:
                url = f"/merchant/{model_prefix(model)}{route}"
                cases.append(pytest.param(url, "", id=pattern.name))
    cases.append(pytest.param("/merchant/", "", id="index"))
    for app_label in sorted({m._meta.app_label for m in MERCHANT_MODELS}):
        cases.append(pytest.param(f"/merchant/{app_label}/", "", id=f"app_list-{app_label}"))
    for name, queries in SITE_PAGES.items():
        for pattern in merchant_site.get_urls():
            if isinstance(pattern, URLPattern) and pattern.name == name:
                for query in queries:
                    url = f"/merchant/{pattern.pattern}"
                    cases.append(pytest.param(url, query, id=f"{name}-{query or 'plain'}"))
    return cases


def b_query(bravo: Store) -> dict[str, str]:
    """B's ids under every name a page could be tempted to read."""
    order = bravo.rows(Order).first()
    return {
        "merchant": str(bravo.merchant.pk),
        "merchant_id": str(bravo.merchant.pk),
        "merchant__id__exact": str(bravo.merchant.pk),
        "order": str(order.pk),
        "order__id__exact": str(order.pk),
        "product": str(bravo.ids["product"]),
        "customer": bravo.shared_key,
        "email": bravo.first_buyer,
        "store": bravo.merchant.slug,
    }


@pytest.mark.parametrize(("url", "query"), page_cases())
def test_merchant_centre_page_shows_nothing_of_b(
    url: str, query: str, merchant_world: MerchantWorld, alpha_client: Client
):
    """The page as A opens it, then with B's ids under every name it could read: each answers
    (200, or 403 where no merchant may add), A is still logged in, and nothing of B shows."""
    bravo = merchant_world.bravo
    own = dict(part.split("=", 1) for part in query.split("&") if part)
    statuses = []
    for forged, params in ((False, own), (True, {**b_query(bravo), **own})):
        response = alpha_client.get(url, params, follow=True)

        where = f"GET {url}?{query} {'with B ids' if forged else ''}"
        assert response.status_code in (200, 403), f"{where}: {response.status_code}"
        assert not response.redirect_chain or not response.redirect_chain[-1][0].startswith(
            "/merchant/login/"
        ), f"{where}: not logged in (vacuous)"
        leaked = leaks(bravo.markers, body_of(response), echoed=tuple(params.values()))
        assert not leaked, f"{where} shows Bravo's {leaked}"
        statuses.append(response.status_code)
    assert statuses[0] == statuses[1], f"{url}?{query}: B's ids change the answer {statuses}"


def test_positive_control_statement_and_analytics_show_own_orders(
    merchant_world: MerchantWorld, alpha_client: Client
):
    alpha = merchant_world.alpha
    own_orders = list(alpha.rows(Order).filter(journals__isnull=False).distinct())
    assert own_orders
    for url in (
        "/merchant/ledger/withdrawal/statement/",
        "/merchant/ledger/withdrawal/statement/?format=csv",
        "/merchant/analytics/?export=orders",
    ):
        text = body_of(alpha_client.get(url))
        assert all(order.number in text for order in own_orders), url


# --- the customer-note page, keyed by ?customer= -------------------------------------------------
@pytest.mark.parametrize("method", ["get", "post"])
def test_customer_note_of_b_is_refused(
    method: str, merchant_world: MerchantWorld, alpha_client: Client
):
    """Each of B's customer keys, the shared buyer's included, is a 404 at A, and A's POST
    writes no note under it."""
    bravo = merchant_world.bravo
    before = snapshot()

    for key in bravo.customer_keys:
        url = f"/merchant/customers/note/?customer={key}"
        if method == "get":
            response = alpha_client.get(url)
        else:
            response = alpha_client.post(url, {"tags": "hijacked", "note": "hijacked note"})
        assert response.status_code in REFUSED, f"{method} {url}: {response.status_code}"
        leaked = leaks(bravo.markers, body_of(response), echoed=(url,))
        assert not leaked, f"{url} shows Bravo's {leaked}"

    assert_unchanged(before, f"{method.upper()} customer notes with Bravo's keys")
    assert (
        not CustomerNote.objects.filter(customer_key__in=bravo.customer_keys)
        .exclude(merchant=bravo.merchant)
        .exists()
    )


def test_positive_control_a_sees_its_own_note_on_the_shared_buyer(
    merchant_world: MerchantWorld, alpha_client: Client
):
    alpha, bravo = merchant_world.alpha, merchant_world.bravo
    assert alpha.shared_key != bravo.shared_key, "customer keys must differ between stores"

    response = alpha_client.get(f"/merchant/customers/note/?customer={alpha.shared_key}")

    assert response.status_code == 200
    text = html.unescape(body_of(response))
    assert "Alpha private note on the shared buyer" in text
    assert not leaks(bravo.markers, text)


# --- the storefront: B's listing and product ids under A's address ------------------------------
def test_storefront_serves_no_b_listing_or_product_under_as_address(
    merchant_world: MerchantWorld,
):
    alpha, bravo = merchant_world.alpha, merchant_world.bravo
    client = english_client()
    a_listing = ResaleListing.objects.get(merchant=alpha.merchant)
    b_listing = ResaleListing.objects.get(merchant=bravo.merchant)
    own = client.get(f"/s/{alpha.merchant.slug}/r/{a_listing.pk}/")
    assert own.status_code == 200, "positive control: A's own listing is on sale"

    for url in (
        f"/s/{alpha.merchant.slug}/r/{b_listing.pk}/",
        f"/s/{alpha.merchant.slug}/p/{Product.objects.get(pk=bravo.ids['product']).slug}/",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        leaked = leaks(bravo.markers, body_of(response), echoed=(url,))
        assert not leaked, f"{url} shows Bravo's {leaked}"


# =================================================================================================
# 2. buyers' order tokens
# =================================================================================================
@dataclass
class Buyer:
    bought: DeliveredOrder
    dispute: Dispute
    references: list[str]  # every payment reference of the buyer's orders
    markers: list[str] = field(default_factory=list)

    @property
    def token(self) -> str:
        return self.bought.token

    @property
    def order(self) -> Order:
        return self.bought.order


@dataclass
class BuyerWorld:
    a: Buyer
    b: Buyer
    c: Buyer  # Cara, who bought at another store
    b_pending_token: str  # Ben's second order, awaiting payment
    b_pending_reference: str

    def pair(self, direction: str) -> tuple[Buyer, Buyer]:
        """``"a_token_b_ids"`` → (Ann, Ben): the attacker's token, the victim's ids."""
        attacker, _, victim, _ = direction.split("_")
        return getattr(self, attacker), getattr(self, victim)


def build_buyer(product: Product, *, name: str, screenshot: bytes, merchant: Merchant) -> Buyer:
    lower = name.lower()
    email = f"{lower}@buyers.example"
    bought = delivered_order(product, email=email)
    dispute = dispute_services.open_dispute(
        order_id=bought.order.pk,
        reason="key_invalid",
        message=f"{name}'s complaint about the key",
        key_index=1,
        screenshot=SimpleUploadedFile("s.img", screenshot, content_type="image/png"),
    )
    dispute_services.post_message(
        dispute_id=dispute.pk,
        role="merchant",
        text=f"Store's reply to {name}",
        author=merchant.owner,
    )
    references = list(
        Payment.objects.filter(order=bought.order).values_list("reference", flat=True)
    )
    buyer = Buyer(bought=bought, dispute=dispute, references=references)
    buyer.markers = [
        email,
        dispute.message,
        f"Store's reply to {name}",
        bought.order.number,
        bought.token,
        *references,
        *(key.text for key in order_selectors.delivered_keys(order=bought.order)),
    ]
    return buyer


@pytest.fixture(scope="module")
def buyer_world(module_db) -> BuyerWorld:
    merchant = MerchantFactory(name="Delta Store", slug="delta-store")
    product = ProductFactory(merchant=merchant, title="Delta Widget", slug="delta-widget")
    add_keys(product, 6, prefix="DELTA-SECRET")
    a = build_buyer(product, name="Ann", screenshot=png_bytes(3, 2), merchant=merchant)
    b = build_buyer(product, name="Ben", screenshot=gif_bytes(), merchant=merchant)
    echo = MerchantFactory(name="Echo Store", slug="echo-store")
    echo_product = ProductFactory(merchant=echo, title="Echo Widget", slug="echo-widget")
    add_keys(echo_product, 3, prefix="ECHO-SECRET")
    c = build_buyer(echo_product, name="Cara", screenshot=png_bytes(2, 2), merchant=echo)
    pending = place(product, email="ben@buyers.example")
    payment = open_payment(pending.order)
    assert payment.status == Payment.Status.CREATED
    b.references.append(payment.reference)
    b.markers += [pending.order.number, pending.token, payment.reference]
    return BuyerWorld(
        a=a, b=b, c=c, b_pending_token=pending.token, b_pending_reference=payment.reference
    )


@dataclass(frozen=True)
class TokenRoute:
    name: str
    method: str
    path: str  # with {token}, {reference}, {dispute_id}

    @property
    def takes_id(self) -> bool:
        return "{reference}" in self.path or "{dispute_id}" in self.path


TOKEN_ROUTES = [
    TokenRoute("detail", "get", "/o/{token}/"),
    TokenRoute("keys", "get", "/o/{token}/keys.txt"),
    TokenRoute("pay", "post", "/o/{token}/pay/"),
    TokenRoute("hosted_pay", "get", "/o/{token}/pay/{reference}/"),
    TokenRoute("data_download", "get", "/o/{token}/my-data.json"),
    TokenRoute("anonymise", "post", "/o/{token}/erase/"),
    TokenRoute("start", "get", "/o/{token}/problem/"),
    TokenRoute("start", "post", "/o/{token}/problem/"),
    TokenRoute("detail", "get", "/o/{token}/problem/{dispute_id}/"),
    TokenRoute("message", "post", "/o/{token}/problem/{dispute_id}/message/"),
    TokenRoute("screenshot", "get", "/o/{token}/problem/{dispute_id}/screenshot/"),
    TokenRoute("review", "post", "/o/{token}/review/"),
]

BUYER_POST = {
    "gateway": "sandbox",
    "confirm": "yes",
    "reason": "key_invalid",
    "message": "forged complaint",
    "key_index": "1",
    "text": "forged message",
    "rating": "1",
    "comment": "forged review",
}


def request_token_route(
    client: Client, route: TokenRoute, *, token: str, reference: str, dispute_id: int
):
    url = route.path.format(token=token, reference=reference, dispute_id=dispute_id)
    if route.method == "get":
        return url, client.get(url)
    return url, client.post(url, BUYER_POST)


def token_paths(patterns: list[Any], prefix: str = "") -> Iterator[str]:
    """Every URL of the URLconf (outside the two admin sites) whose path names a token."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if pattern.namespace not in ("admin", merchant_site.name):
                yield from token_paths(pattern.url_patterns, route)
        elif "token" in route:
            yield "/" + PARAM.sub(lambda m: "{" + m["name"] + "}", route)


def test_token_matrix_covers_every_token_url():
    """Every buyer URL keyed by an order token is in TOKEN_ROUTES; a new one fails here."""
    found = set(token_paths(get_resolver().url_patterns))
    assert found == {route.path for route in TOKEN_ROUTES}


# --- A's token with B's ids ----------------------------------------------------------------------
CROSS_CASES = [
    pytest.param(route, direction, id=f"{route.name}-{route.method}-{direction}")
    for route in TOKEN_ROUTES
    if route.takes_id
    # Ann and Ben bought at one store; Cara at another.
    for direction in ("a_token_b_ids", "b_token_a_ids", "a_token_c_ids", "c_token_a_ids")
]


@pytest.mark.parametrize(("route", "direction"), CROSS_CASES)
def test_one_buyers_token_does_not_open_the_others_ids(
    route: TokenRoute, direction: str, buyer_world: BuyerWorld
):
    attacker, victim = buyer_world.pair(direction)
    client = english_client()
    before = snapshot()
    references = victim.references if "{reference}" in route.path else [""]

    for reference in references:
        url, response = request_token_route(
            client,
            route,
            token=attacker.token,
            reference=reference,
            dispute_id=victim.dispute.pk,
        )
        assert response.status_code == 404, f"{route.method.upper()} {url}: {response.status_code}"
        text = body_of(response)
        assert not response.get("Content-Type", "").startswith("image/"), url
        leaked = leaks(victim.markers, text, echoed=(url, reference))
        assert not leaked, f"{url} shows the other buyer's {leaked}"

    assert_unchanged(before, f"{route.method.upper()} {route.path}, {direction}")


# --- forged tokens -------------------------------------------------------------------------------
def _flip(char: str) -> str:
    return "1" if char == "0" else "0"


FORGERIES = {
    "last_char_changed": lambda w: w.a.token[:-1] + _flip(w.a.token[-1]),
    "first_char_changed": lambda w: _flip(w.a.token[0]) + w.a.token[1:],
    "truncated": lambda w: w.a.token[:-1],
    "extended": lambda w: w.a.token + "0",
    "uppercased": lambda w: w.a.token.upper(),
    "trailing_space": lambda w: w.a.token + " ",
    "b_order_number": lambda w: w.b.order.number,
    "b_order_pk": lambda w: str(w.b.order.pk),
    "b_stored_hash": lambda w: w.b.order.token_hash,
    "b_nonce": lambda w: w.b.order.token_nonce,
    "empty": lambda w: "",
    "zeros": lambda w: "0" * 64,
}
# Forged from A's token: A's own ids go with it; forged from B's data: B's ids.
FORGERIES_FROM_A = {
    "last_char_changed",
    "first_char_changed",
    "truncated",
    "extended",
    "uppercased",
    "trailing_space",
    "zeros",
}

FORGED_CASES = [
    pytest.param(route, forgery, id=f"{route.name}-{route.method}-{forgery}")
    for route in TOKEN_ROUTES
    for forgery in FORGERIES
]


@pytest.mark.parametrize(("route", "forgery"), FORGED_CASES)
def test_forged_token_is_404_on_every_token_url(
    route: TokenRoute, forgery: str, buyer_world: BuyerWorld
):
    token = FORGERIES[forgery](buyer_world)
    assert token != buyer_world.a.token and token != buyer_world.b.token
    # Forged from A's token: A's own ids; forged from B's data: B's ids. Either way the ids are
    # real, so only the token stands between the request and the order.
    owner = buyer_world.a if forgery in FORGERIES_FROM_A else buyer_world.b
    client = english_client()
    before = snapshot()

    for reference in owner.references if "{reference}" in route.path else [""]:
        url, response = request_token_route(
            client, route, token=token, reference=reference, dispute_id=owner.dispute.pk
        )
        assert response.status_code == 404, f"{route.method.upper()} {url}: {response.status_code}"
        text = body_of(response)
        for buyer in (buyer_world.a, buyer_world.b, buyer_world.c):
            leaked = leaks(buyer.markers, text, echoed=(url, token, reference))
            assert not leaked, f"{url} shows {leaked}"

    assert_unchanged(before, f"{route.method.upper()} {route.path} with a {forgery} token")


# --- positive controls: the real token does open its own ids -------------------------------------
def test_positive_control_each_token_opens_its_own_pages(buyer_world: BuyerWorld):
    client = english_client()
    for buyer in (buyer_world.a, buyer_world.b, buyer_world.c):
        token, dispute = buyer.token, buyer.dispute
        order_page = client.get(f"/o/{token}/")
        assert order_page.status_code == 200
        assert buyer.order.number in body_of(order_page)
        assert client.get(f"/o/{token}/keys.txt").status_code == 200
        assert client.get(f"/o/{token}/my-data.json").status_code == 200
        assert client.get(f"/o/{token}/problem/").status_code == 200
        page = client.get(f"/o/{token}/problem/{dispute.pk}/")
        assert page.status_code == 200
        assert dispute.message in html.unescape(body_of(page))
        shot = client.get(f"/o/{token}/problem/{dispute.pk}/screenshot/")
        assert shot.status_code == 200
        assert shot["Content-Type"].startswith("image/")
        body_of(shot)
        # The paid payment's pay page sends the buyer back to the order.
        paid = client.get(f"/o/{token}/pay/{buyer.references[0]}/")
        assert paid.status_code == 302
        assert paid["Location"] == f"/o/{token}/"
    pending = client.get(f"/o/{buyer_world.b_pending_token}/pay/{buyer_world.b_pending_reference}/")
    assert pending.status_code == 200


def test_positive_control_a_buyer_posts_to_its_own_dispute(buyer_world: BuyerWorld):
    a = buyer_world.a
    count = DisputeMessage.objects.filter(dispute=a.dispute).count()

    response = english_client().post(
        f"/o/{a.token}/problem/{a.dispute.pk}/message/", {"text": "Still broken."}
    )

    assert response.status_code == 302
    assert DisputeMessage.objects.filter(dispute=a.dispute).count() == count + 1


# --- the order lookup ----------------------------------------------------------------------------
def lookup(client: Client, *, number: str, email: str):
    return client.post("/lookup/", {"number": number, "email": email, "query_password": ""})


@pytest.mark.parametrize(
    ("number_of", "email_of"),
    [("b", "a"), ("a", "b")],
    ids=["b_number_a_email", "a_number_b_email"],
)
def test_lookup_with_another_buyers_email_finds_nothing(
    number_of: str, email_of: str, buyer_world: BuyerWorld
):
    owner = getattr(buyer_world, number_of)
    other = getattr(buyer_world, email_of)
    client = english_client()

    response = lookup(client, number=owner.order.number, email=other.order.email)

    assert response.status_code == 400
    assert "No order matches" in body_of(response)
    detail = client.get(f"/lookup/{owner.order.number}/")
    assert detail.status_code == 302
    assert detail["Location"] == "/lookup/"
    for page in (response, client.get("/lookup/")):
        leaked = leaks(owner.markers, body_of(page), echoed=(owner.order.number, other.order.email))
        assert not leaked, leaked


def test_lookup_grant_of_one_order_does_not_open_another(buyer_world: BuyerWorld):
    a, b = buyer_world.a, buyer_world.b
    client = english_client()

    found = lookup(client, number=a.order.number, email=a.order.email)

    assert found.status_code == 302, "positive control: A's own number and email find A's order"
    assert found["Location"] == f"/lookup/{a.order.number}/"
    assert a.order.number in body_of(client.get(found["Location"]))
    refused = client.get(f"/lookup/{b.order.number}/")
    assert refused.status_code == 302
    assert refused["Location"] == "/lookup/"
    assert not leaks(b.markers, body_of(client.get("/lookup/")))


# --- the snapshot itself -------------------------------------------------------------------------
def test_snapshot_sees_a_change_in_any_row_and_in_many_to_many_tables(
    merchant_world: MerchantWorld, db
):
    """``assert_unchanged`` is what every refusal above rests on: it notices one changed column of
    one row, and a many-to-many link."""
    bravo = merchant_world.bravo
    tables = {label(model) for model in SNAPSHOT_MODELS}
    assert {"shop.Product", "promotions.Coupon_products", "admin.LogEntry"} <= tables
    before = snapshot()
    Product.objects.filter(pk=bravo.ids["product"]).update(sort_order=F("sort_order") + 1)
    assert snapshot()["shop.Product"] != before["shop.Product"]
    coupon = Coupon.objects.get(merchant=bravo.merchant)
    middle = snapshot()
    coupon.products.add(Product.objects.get(pk=bravo.ids["variant_of"]).variants.first())
    after = snapshot()
    assert after["promotions.Coupon_products"] != middle["promotions.Coupon_products"]
