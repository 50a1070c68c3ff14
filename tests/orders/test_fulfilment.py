"""Reservation lifetimes, late payments, unfulfilled orders, reusable and manual delivery."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from orders import selectors, services
from orders.exceptions import InvalidOrderInput, NotDeliverable, OutOfStock
from orders.models import Delivery, Order, OrderStatusChange, PaymentEvent
from shop import selectors as shop_selectors
from shop.exceptions import ProductUnavailable
from shop.models import CardKey, Product
from tests.conftest import open_payment, place
from tests.factories import MerchantFactory, ProductFactory, UserFactory, add_keys
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


def test_reservation_holds_keys_until_the_ttl(stocked_product, settings):
    placed = place(stocked_product, quantity=3)
    held = CardKey.objects.filter(order=placed.order, status=CardKey.Status.RESERVED)
    assert held.count() == 3
    ttl = timedelta(minutes=settings.ORDER_TTL_MINUTES)
    for key in held:
        assert abs(key.reserved_until - (placed.order.created_at + ttl)) < timedelta(seconds=5)
    assert shop_selectors.stock_left(stocked_product) == 7


def test_out_of_stock_writes_nothing(product):
    add_keys(product, 2)
    keys_before = sorted(CardKey.objects.values_list("id", "status", "order_id"))
    with pytest.raises(OutOfStock):
        place(product, quantity=3)
    assert not Order.objects.exists()
    assert not OrderStatusChange.objects.exists()
    assert sorted(CardKey.objects.values_list("id", "status", "order_id")) == keys_before


@pytest.mark.parametrize(
    ("quantity", "email", "field"),
    [(0, "a@example.com", "quantity"), (11, "a@example.com", "quantity"), (1, "nope", "email")],
)
def test_invalid_input_writes_nothing(stocked_product, quantity, email, field):
    with pytest.raises(InvalidOrderInput) as exc:
        place(stocked_product, quantity=quantity, email=email)
    assert field in exc.value.errors
    assert not Order.objects.exists()
    assert not CardKey.objects.exclude(status=CardKey.Status.AVAILABLE).exists()


def test_inactive_product_or_suspended_merchant_cannot_be_bought(stocked_product):
    Product.objects.filter(pk=stocked_product.pk).update(is_active=False)
    stocked_product.refresh_from_db()
    with pytest.raises(ProductUnavailable):
        place(stocked_product)
    stocked_product.is_active = True
    stocked_product.save()
    stocked_product.merchant.status = stocked_product.merchant.Status.SUSPENDED
    stocked_product.merchant.save()
    with pytest.raises(ProductUnavailable):
        place(stocked_product)
    assert not Order.objects.exists()


def test_lapsed_reservation_counts_as_free_stock(product):
    add_keys(product, 2)
    lapsed = place(product, quantity=2, now=timezone.now() - timedelta(hours=1)).order
    assert shop_selectors.stock_left(product) == 2

    fresh = place(product, quantity=2).order

    assert CardKey.objects.filter(order=fresh, status=CardKey.Status.RESERVED).count() == 2
    assert not CardKey.objects.filter(order=lapsed).exists()


def test_expiry_releases_keys_and_is_idempotent(product):
    add_keys(product, 3)
    order = place(product, quantity=2, now=timezone.now() - timedelta(hours=1)).order
    place(product, quantity=1)  # still inside its reservation

    assert services.expire_pending_orders() == 1
    assert services.expire_pending_orders() == 0

    order.refresh_from_db()
    assert order.status == Order.Status.EXPIRED
    assert CardKey.objects.filter(status=CardKey.Status.AVAILABLE, order=None).count() == 2
    assert CardKey.objects.filter(status=CardKey.Status.RESERVED).count() == 1
    assert OrderStatusChange.objects.filter(order=order, to_status="expired").count() == 1


def test_expiry_task_runs_the_service(product):
    from orders.tasks import expire_pending_orders_task

    add_keys(product, 1)
    place(product, now=timezone.now() - timedelta(hours=1))
    assert expire_pending_orders_task.delay().get() == 1


def _payment_opened_before_expiry(order):
    deadline = order.expires_at
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() + timedelta(minutes=1))
    order.refresh_from_db()
    payment = open_payment(order)
    Order.objects.filter(pk=order.pk).update(expires_at=deadline)
    CardKey.objects.filter(order=order).update(reserved_until=deadline)
    return payment


def test_late_payment_after_expiry_is_honoured_with_fresh_keys(product):
    add_keys(product, 3)
    order = place(product, quantity=2, now=timezone.now() - timedelta(hours=1)).order
    payment = _payment_opened_before_expiry(order)
    services.expire_pending_orders()
    # Meanwhile somebody else bought one of the released keys.
    other = place(product, quantity=1).order

    assert pay(payment).status_code == 200

    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert Delivery.objects.filter(order=order).count() == 2
    assert CardKey.objects.get(order=other).status == CardKey.Status.RESERVED
    assert list(
        OrderStatusChange.objects.filter(order=order)
        .order_by("id")
        .values_list("to_status", flat=True)
    ) == ["pending", "expired", "paid", "delivered"]


def test_late_payment_that_stock_cannot_cover_is_unfulfilled_not_partial(product):
    add_keys(product, 2)
    order = place(product, quantity=2, now=timezone.now() - timedelta(hours=1)).order
    payment = _payment_opened_before_expiry(order)
    # The lapsed reservation went to another buyer, except for one key.
    place(product, quantity=1)

    assert pay(payment).status_code == 200

    order.refresh_from_db()
    assert order.status == Order.Status.UNFULFILLED
    assert not Delivery.objects.filter(order=order).exists()
    assert payment.events.get().outcome == PaymentEvent.Outcome.UNFULFILLED
    held = CardKey.objects.get(order=order)
    assert held.status == CardKey.Status.RESERVED
    assert held.reserved_until is None, "an unfulfilled order's keys must not lapse"
    # The key it holds is not free stock for anybody else.
    assert shop_selectors.stock_left(product) == 0
    with pytest.raises(OutOfStock):
        place(product)

    # Staff retry before the restock: nothing changes.
    with pytest.raises(OutOfStock):
        services.retry_fulfilment(order_id=order.pk)
    assert Order.objects.get(pk=order.pk).status == Order.Status.UNFULFILLED

    add_keys(product, 5, prefix="RESTOCK")
    staff = UserFactory(is_staff=True)
    services.retry_fulfilment(order_id=order.pk, actor=staff)

    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert Delivery.objects.filter(order=order).count() == 2
    assert held.pk in Delivery.objects.filter(order=order).values_list("card_key_id", flat=True)
    assert len(selectors.delivered_keys(order=order)) == 2
    with pytest.raises(NotDeliverable):
        services.retry_fulfilment(order_id=order.pk)


def test_delivered_keys_decrypt_to_what_was_imported(product):
    plaintexts = add_keys(product, 4)
    order = place(product, quantity=3).order
    pay(open_payment(order))
    shown = [k.text for k in selectors.delivered_keys(order=order)]
    assert len(shown) == 3
    assert set(shown) <= set(plaintexts)


def test_receipt_email_is_sent_once_with_the_link_not_the_keys(
    product, django_capture_on_commit_callbacks
):
    plaintexts = add_keys(product, 1)
    order = place(product, email="me@example.com").order
    with django_capture_on_commit_callbacks(execute=True):
        pay(open_payment(order))
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["me@example.com"]
    assert order.number in message.subject + message.body
    assert "/o/" in message.body
    assert plaintexts[0] not in message.body
    from orders.notifications import send_order_receipt

    assert send_order_receipt(order_id=order.pk) is False
    assert len(mail.outbox) == 1


# --- reusable ------------------------------------------------------------------------------------
def test_reusable_key_goes_to_every_buyer_up_to_the_cap(merchant):
    product = ProductFactory(
        merchant=merchant, delivery_mode=Product.DeliveryMode.REUSABLE, reusable_cap=3
    )
    (shared,) = add_keys(product, 1, prefix="SHARED")

    first = place(product, quantity=2).order
    pay(open_payment(first))
    second = place(product, quantity=1).order
    pay(open_payment(second))

    for order in (first, second):
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED
        assert [k.text for k in selectors.delivered_keys(order=order)] == [shared]
    product.refresh_from_db()
    assert product.reusable_sold == 3
    with pytest.raises(OutOfStock):
        place(product, quantity=1)
    assert CardKey.objects.get(product=product).status == CardKey.Status.AVAILABLE


def test_reusable_cap_reached_between_order_and_payment_is_unfulfilled(merchant):
    product = ProductFactory(
        merchant=merchant, delivery_mode=Product.DeliveryMode.REUSABLE, reusable_cap=1
    )
    add_keys(product, 1)
    a = place(product).order
    b = place(product).order
    pay(open_payment(a))
    pay(open_payment(b))
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.status, b.status) == (Order.Status.DELIVERED, Order.Status.UNFULFILLED)
    product.refresh_from_db()
    assert product.reusable_sold == 1


def test_reusable_without_cap_is_unlimited(merchant):
    product = ProductFactory(merchant=merchant, delivery_mode=Product.DeliveryMode.REUSABLE)
    add_keys(product, 1)
    for _ in range(5):
        order = place(product, quantity=2).order
        pay(open_payment(order))
    assert Order.objects.filter(status=Order.Status.DELIVERED).count() == 5


# --- manual ------------------------------------------------------------------------------------
@pytest.fixture
def manual_product(merchant):
    return ProductFactory(
        merchant=merchant,
        delivery_mode=Product.DeliveryMode.MANUAL,
        manual_fields=[
            {"name": "game_id", "label": "Game ID", "pattern": r"\d{6,10}"},
            {"name": "server", "label": "Server", "required": False},
        ],
    )


def test_manual_order_validates_buyer_inputs(manual_product):
    with pytest.raises(InvalidOrderInput) as exc:
        place(manual_product, manual_inputs={"game_id": "abc"})
    assert "game_id" in exc.value.errors
    with pytest.raises(InvalidOrderInput):
        place(manual_product, manual_inputs={})
    assert not Order.objects.exists()


def test_manual_order_waits_for_the_merchant_then_notifies_the_buyer(
    manual_product, django_capture_on_commit_callbacks
):
    order = place(manual_product, manual_inputs={"game_id": "12345678", "extra": "x"}).order
    assert order.manual_inputs == {"game_id": "12345678"}
    payment = open_payment(order)

    with django_capture_on_commit_callbacks(execute=True):
        assert pay(payment).status_code == 200

    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert payment.events.get().outcome == PaymentEvent.Outcome.AWAITING_MERCHANT
    merchant_mail = [m for m in mail.outbox if manual_product.merchant.owner.email in m.to]
    assert len(merchant_mail) == 1
    assert order.number in merchant_mail[0].body

    with pytest.raises(InvalidOrderInput):
        services.deliver_manually(order=order, content="   ", actor=manual_product.merchant.owner)
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID

    with django_capture_on_commit_callbacks(execute=True):
        services.deliver_manually(
            order=order,
            content="Recharged 60 gems, ref 998877",
            actor=manual_product.merchant.owner,
        )

    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    delivery = Delivery.objects.get(order=order)
    assert b"998877" not in bytes(delivery.ciphertext)
    assert [k.text for k in selectors.delivered_keys(order=order)] == [
        "Recharged 60 gems, ref 998877"
    ]
    buyer_mail = [m for m in mail.outbox if order.email in m.to]
    assert len(buyer_mail) == 1
    with pytest.raises(NotDeliverable):
        services.deliver_manually(order=order, content="again", actor=manual_product.merchant.owner)


def test_manual_delivery_ciphertext_is_bound_to_its_order(manual_product):
    from shop import vault

    orders = []
    for content in ("first goods", "second goods"):
        order = place(manual_product, manual_inputs={"game_id": "1234567"}).order
        pay(open_payment(order))
        services.deliver_manually(order=order, content=content, actor=manual_product.merchant.owner)
        orders.append(order)
    first, second = (Delivery.objects.get(order=o) for o in orders)
    # Swap the ciphertexts: neither decrypts under the other order's binding.
    Delivery.objects.filter(pk=first.pk).update(
        key_id=second.key_id, nonce=second.nonce, ciphertext=second.ciphertext
    )
    with pytest.raises(vault.VaultError):
        selectors.delivered_keys(order=Order.objects.get(pk=orders[0].pk))


def test_other_merchants_staff_cannot_be_confused_with_owner():
    # A merchant with no owner email still gets paid orders; the notification is skipped.
    merchant = MerchantFactory(owner=UserFactory(email=""))
    product = ProductFactory(
        merchant=merchant,
        delivery_mode=Product.DeliveryMode.MANUAL,
        manual_fields=[{"name": "uid", "label": "UID"}],
    )
    order = place(product, manual_inputs={"uid": "u1"}).order
    assert pay(open_payment(order)).status_code == 200
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID


def test_checkout_lands_on_the_order_page_when_the_payment_cannot_open(stocked_product, settings):
    from orders.exceptions import GatewayUnavailable
    from orders.gateways.sandbox import SandboxGateway

    def refuse(self, **kwargs):
        raise GatewayUnavailable("gateway is down")

    original = SandboxGateway.create_payment
    SandboxGateway.create_payment = refuse
    try:
        result = services.checkout(
            product=stocked_product,
            quantity=1,
            email="a@example.com",
            gateway_name="sandbox",
            base_url="http://testserver/",
        )
    finally:
        SandboxGateway.create_payment = original
    assert result.redirect_url == f"/o/{result.token}/"
    assert CardKey.objects.filter(order=result.order, status=CardKey.Status.RESERVED).count() == 1


def test_checkout_records_the_gateway_with_the_order_and_opens_one_payment(stocked_product):
    from orders.models import Payment

    result = services.checkout(
        product=stocked_product,
        quantity=1,
        email="a@example.com",
        gateway_name="sandbox",
        base_url="http://testserver/",
    )

    order = Order.objects.get(pk=result.order.pk)
    assert order.gateway == "sandbox"
    payment = Payment.objects.get(order=order)
    assert (payment.gateway, payment.amount) == ("sandbox", order.amount)
    assert result.redirect_url != f"/o/{result.token}/"


def test_checkout_records_no_gateway_that_refuses_the_amount(stocked_product):
    """The gateway is recorded with the order only if it takes the amount, as opening the
    payment would have; the buyer lands on the order page to choose another."""
    from orders.models import GatewayConfig, Payment

    GatewayConfig.objects.create(gateway="sandbox", enabled=True, max_amount="0.50")

    result = services.checkout(
        product=stocked_product,
        quantity=1,
        email="a@example.com",
        gateway_name="sandbox",
        base_url="http://testserver/",
    )

    assert result.redirect_url == f"/o/{result.token}/"
    assert Order.objects.get(pk=result.order.pk).gateway == ""
    assert not Payment.objects.filter(order=result.order).exists()


def test_paying_an_order_again_at_another_gateway_records_that_gateway(stocked_product):
    order = place(stocked_product).order
    open_payment(order)
    Order.objects.filter(pk=order.pk).update(gateway="alipay")  # chosen before, elsewhere
    order.refresh_from_db()

    open_payment(order)

    assert Order.objects.get(pk=order.pk).gateway == "sandbox"


# Queries of the product page's Buy POST (issue 7, ``python -m bench.profile``): merchant,
# product, gateway config (the form's choices and ``checkout``'s check), price tiers, risk rules
# + blacklist, order insert, the key claim (planner setting, SKIP LOCKED select, restore,
# conditional update), audit row, risk decision, payment insert; plus the test transaction's
# SAVEPOINT/RELEASE around the two service transactions. It was 21 before issue 7 (a gateway
# config read three times, the order's gateway written by a second UPDATE).
BUY_QUERIES = 19


def test_buy_post_query_count(client, stocked_product, django_assert_max_num_queries):
    from django.urls import reverse

    from orders.models import Payment

    url = reverse("shop:product", args=[stocked_product.merchant.slug, stocked_product.slug])
    data = {
        "option": stocked_product.pk,
        "quantity": 1,
        "email": "buyer@example.com",
        "query_password": "",
        "gateway": "sandbox",
    }

    with django_assert_max_num_queries(BUY_QUERIES):
        response = client.post(url, data)

    assert response.status_code == 302
    order = Order.objects.get()
    assert (order.status, order.gateway) == (Order.Status.PENDING, "sandbox")
    assert CardKey.objects.filter(order=order, status=CardKey.Status.RESERVED).count() == 1
    assert Payment.objects.filter(order=order, gateway="sandbox").count() == 1
