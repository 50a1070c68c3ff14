"""The buyer's order page (by secret token), its .txt download, the lookup by order number and
email, and the receipt email."""

import pytest
from django.core import mail
from django.urls import reverse

from orders import selectors, services, throttle
from orders.models import Order
from tests.conftest import open_payment, place
from tests.factories import ProductFactory, UserFactory, add_keys
from tests.pages import find_all, texts
from tests.test_helpers_payments import pay

ORDER_PAGE_QUERIES = 5 + 1  # order, deliveries with keys, first-view update, payment, refunds
# + the order's review (reviews)


def detail_url(token):
    return reverse("orders:detail", args=[token])


def download_url(token):
    return reverse("orders:keys_download", args=[token])


def shown_keys(response):
    return texts(response.content, "code", cls="key")


def shown_status(response):
    [element] = find_all(response.content, cls="status")
    return element.attrs["data-status"]


def refresh_seconds(response):
    metas = find_all(response.content, "meta", http_equiv="refresh")
    return int(metas[0].attrs["content"]) if metas else None


def pay_order(order):
    pay(open_payment(order))
    order.refresh_from_db()
    return order


@pytest.fixture
def keys_product(product):
    """A product and its stock's plaintexts, in the order orders receive them."""
    return product, add_keys(product, 5)


@pytest.fixture
def paid(keys_product, django_capture_on_commit_callbacks):
    product, plaintexts = keys_product
    placed = place(product, quantity=3)
    with django_capture_on_commit_callbacks(execute=True):
        pay_order(placed.order)
    assert placed.order.status == Order.Status.DELIVERED
    return placed, plaintexts[:3]


# --- the order page ------------------------------------------------------------------------------
def test_pending_order_page_shows_status_and_refreshes_itself(client, keys_product):
    placed = place(keys_product[0], quantity=2)

    response = client.get(detail_url(placed.token))

    assert response.status_code == 200
    assert shown_status(response) == Order.Status.PENDING
    assert placed.order.number in response.content.decode()
    assert refresh_seconds(response) == 3
    assert shown_keys(response) == []
    assert not find_all(response.content, "a", href=download_url(placed.token))
    # Not paid yet: offers to pay again.
    [form] = find_all(response.content, "form", action=reverse("orders:pay", args=[placed.token]))
    assert form.attrs["method"] == "post"
    assert "no-store" in response["Cache-Control"]
    assert client.get(download_url(placed.token)).status_code == 404


def test_paid_order_page_shows_keys_with_copy_buttons_and_download(client, paid):
    placed, plaintexts = paid

    response = client.get(detail_url(placed.token))

    assert response.status_code == 200
    assert shown_status(response) == Order.Status.DELIVERED
    assert refresh_seconds(response) is None
    assert shown_keys(response) == plaintexts
    key_ids = [element.attrs["id"] for element in find_all(response.content, "code", cls="key")]
    buttons = find_all(response.content, "button", cls="copy")
    assert [button.attrs["data-copy-target"] for button in buttons] == key_ids
    assert find_all(response.content, "a", href=download_url(placed.token))
    assert "no-store" in response["Cache-Control"]

    download = client.get(download_url(placed.token))

    assert download.status_code == 200
    assert download["Content-Type"].startswith("text/plain")
    assert download["Content-Disposition"] == (
        f'attachment; filename="order-{placed.order.number}.txt"'
    )
    assert "no-store" in download["Cache-Control"]
    body = download.content.decode()
    assert body == "\n".join(plaintexts) + "\n"
    assert body.splitlines() == plaintexts


def test_page_for_paid_manual_order_refreshes_until_delivered(client, merchant):
    product = ProductFactory(merchant=merchant, delivery_mode="manual")
    placed = place(product)
    pay_order(placed.order)
    assert placed.order.status == Order.Status.PAID

    waiting = client.get(detail_url(placed.token))
    assert shown_status(waiting) == Order.Status.PAID
    assert refresh_seconds(waiting) is not None
    assert shown_keys(waiting) == []

    services.deliver_manually(order=placed.order, content="GIFT-CODE-XYZ", actor=UserFactory())

    delivered = client.get(detail_url(placed.token))
    assert shown_status(delivered) == Order.Status.DELIVERED
    assert refresh_seconds(delivered) is None
    assert shown_keys(delivered) == ["GIFT-CODE-XYZ"]
    assert client.get(download_url(placed.token)).content.decode() == "GIFT-CODE-XYZ\n"


def test_reusable_order_page_shows_the_shared_key(client, merchant):
    product = ProductFactory(merchant=merchant, delivery_mode="reusable")
    [shared] = add_keys(product, 1)
    placed = place(product, quantity=2)
    pay_order(placed.order)

    assert shown_keys(client.get(detail_url(placed.token))) == [shared]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-1] + ("0" if token[-1] != "0" else "1"),
        lambda token: token[:32],
        lambda token: token.upper(),
        lambda token: "x" * 200,
    ],
    ids=["one-char-off", "truncated", "upper-case", "over-long"],
)
def test_wrong_token_is_not_found(client, paid, mangle):
    placed, _plaintexts = paid
    wrong = mangle(placed.token)

    assert client.get(detail_url(wrong)).status_code == 404
    assert client.get(download_url(wrong)).status_code == 404
    placed.order.refresh_from_db()
    assert placed.order.keys_first_viewed_at is None


def test_the_order_number_is_not_a_token(client, paid):
    placed, _plaintexts = paid

    assert client.get(detail_url(placed.order.number)).status_code == 404


def test_first_view_of_the_keys_is_recorded_once(client, paid):
    placed, _plaintexts = paid
    order = placed.order

    client.get(detail_url(placed.token), REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="First/1.0")
    order.refresh_from_db()
    first_at = order.keys_first_viewed_at
    assert first_at is not None
    assert order.keys_first_viewed_ip == "203.0.113.7"
    assert order.keys_first_viewed_user_agent == "First/1.0"

    client.get(detail_url(placed.token), REMOTE_ADDR="198.51.100.9", HTTP_USER_AGENT="Later/2.0")
    client.get(download_url(placed.token), REMOTE_ADDR="198.51.100.9", HTTP_USER_AGENT="Later/2.0")
    order.refresh_from_db()
    assert (
        order.keys_first_viewed_at,
        order.keys_first_viewed_ip,
        order.keys_first_viewed_user_agent,
    ) == (first_at, "203.0.113.7", "First/1.0")


def test_a_download_counts_as_the_first_view(client, paid):
    placed, _plaintexts = paid

    client.get(download_url(placed.token), REMOTE_ADDR="203.0.113.8", HTTP_USER_AGENT="curl/8")

    placed.order.refresh_from_db()
    assert placed.order.keys_first_viewed_ip == "203.0.113.8"
    assert placed.order.keys_first_viewed_user_agent == "curl/8"


def test_viewing_an_unpaid_order_records_no_key_view(client, keys_product):
    placed = place(keys_product[0])

    client.get(detail_url(placed.token))

    placed.order.refresh_from_db()
    assert placed.order.keys_first_viewed_at is None


@pytest.mark.parametrize("quantity", [1, 20])
def test_order_page_query_count_does_not_grow_with_keys(
    client, merchant, django_assert_max_num_queries, quantity
):
    product = ProductFactory(merchant=merchant, max_quantity=50, how_to_use="Redeem in the app.")
    plaintexts = add_keys(product, 20)
    placed = place(product, quantity=quantity)
    pay_order(placed.order)

    with django_assert_max_num_queries(ORDER_PAGE_QUERIES):
        response = client.get(detail_url(placed.token))
    with django_assert_max_num_queries(ORDER_PAGE_QUERIES):
        download = client.get(download_url(placed.token))

    assert shown_keys(response) == plaintexts[:quantity]
    assert download.content.decode().splitlines() == plaintexts[:quantity]


# --- lookup by order number and email ---------------------------------------------------------
LOOKUP_URL = reverse("orders:lookup")


def lookup(client, order, *, ip="192.0.2.10", **overrides):
    data = {"number": order.number, "email": order.email, "query_password": "", **overrides}
    return client.post(LOOKUP_URL, data, REMOTE_ADDR=ip)


def lookup_detail_url(order):
    return reverse("orders:lookup_detail", args=[order.number])


@pytest.fixture
def protected(keys_product):
    """A paid order whose buyer set a query password."""
    placed = place(keys_product[0], quantity=1, query_password="tea-pot-42")
    pay_order(placed.order)
    return placed.order, keys_product[1][:1]


def test_lookup_page_renders(client, db):
    response = client.get(LOOKUP_URL)

    assert response.status_code == 200
    names = {element.attrs.get("name") for element in find_all(response.content, "input")}
    assert {"number", "email", "query_password"} <= names


def test_lookup_with_number_and_email_opens_the_order(client, paid):
    placed, plaintexts = paid
    order = placed.order

    response = lookup(client, order, email="BUYER@example.com")

    assert response.status_code == 302
    assert response["Location"] == lookup_detail_url(order)
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert shown_status(page) == Order.Status.DELIVERED
    assert shown_keys(page) == plaintexts
    # The page token is not handed out through the lookup: no download link there.
    assert not find_all(page.content, "a", href=download_url(placed.token))
    assert placed.token not in page.content.decode()


def test_lookup_with_query_password(client, protected):
    order, plaintexts = protected

    response = lookup(client, order, query_password="tea-pot-42")

    assert response.status_code == 302
    assert shown_keys(client.get(lookup_detail_url(order))) == plaintexts


@pytest.mark.parametrize(
    "overrides",
    [
        {"email": ""},
        {"email": "someone-else@example.com"},
        {"number": "000000000000"},
        {"query_password": ""},
        {"query_password": "wrong-password"},
    ],
    ids=["no-email", "wrong-email", "wrong-number", "no-password", "wrong-password"],
)
def test_lookup_never_shows_keys_without_every_credential(client, protected, overrides):
    order, plaintexts = protected

    response = lookup(client, order, **overrides)

    assert response.status_code == 400
    body = response.content.decode()
    assert not any(key in body for key in plaintexts)
    assert response.context["form"].errors
    after = client.get(lookup_detail_url(order))
    assert after.status_code == 302
    assert after["Location"] == LOOKUP_URL
    assert not any(key in after.content.decode() for key in plaintexts)


def test_order_number_alone_opens_nothing(client, paid):
    placed, plaintexts = paid

    direct = client.get(lookup_detail_url(placed.order))
    assert direct.status_code == 302
    assert direct["Location"] == LOOKUP_URL

    by_get = client.get(LOOKUP_URL, {"number": placed.order.number})
    assert by_get.status_code == 200
    assert shown_keys(by_get) == []
    assert not any(key in by_get.content.decode() for key in plaintexts)


def test_lookup_grant_belongs_to_the_session_that_looked_up(client, paid):
    from django.test import Client

    placed, _plaintexts = paid
    assert lookup(client, placed.order).status_code == 302

    stranger = Client()
    response = stranger.get(lookup_detail_url(placed.order))

    assert response.status_code == 302
    assert response["Location"] == LOOKUP_URL


def test_lookup_is_throttled_after_repeated_failures(client, protected):
    order, plaintexts = protected
    for _ in range(throttle.LOOKUP_FAILURES_ALLOWED):
        assert lookup(client, order, query_password="guess").status_code == 400

    blocked = lookup(client, order, query_password="tea-pot-42")

    assert blocked.status_code == 400
    assert blocked.context["form"].non_field_errors()
    assert not any(key in blocked.content.decode() for key in plaintexts)
    assert client.get(lookup_detail_url(order)).status_code == 302
    # Another address is not blocked by this one's guessing.
    other = lookup(client, order, ip="192.0.2.99", query_password="tea-pot-42")
    assert other.status_code == 302


def test_successful_lookups_are_not_counted_as_failures(client, protected):
    order, _plaintexts = protected
    for _ in range(throttle.LOOKUP_FAILURES_ALLOWED + 2):
        assert lookup(client, order, query_password="tea-pot-42").status_code == 302


# --- the receipt ---------------------------------------------------------------------------------
def test_receipt_after_payment_links_the_order_page_but_carries_no_keys(paid, settings):
    placed, plaintexts = paid
    order = placed.order
    order.refresh_from_db()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [order.email]
    assert order.number in message.subject
    url = selectors.order_page_url(order)
    assert url == settings.SITE_URL + detail_url(placed.token)
    assert url in message.body
    bodies = [message.subject, message.body] + [content for content, _type in message.alternatives]
    assert any(url in content for content in bodies[2:])
    for content in bodies:
        for key in plaintexts:
            assert key not in content
    assert order.receipt_sent_at is not None


def test_receipt_is_sent_once_even_if_the_gateway_repeats_itself(
    keys_product, django_capture_on_commit_callbacks
):
    placed = place(keys_product[0])
    payment = open_payment(placed.order)
    with django_capture_on_commit_callbacks(execute=True):
        pay(payment)
    with django_capture_on_commit_callbacks(execute=True):
        pay(payment)

    assert len(mail.outbox) == 1


def test_no_receipt_before_payment(client, keys_product, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        placed = place(keys_product[0])
        open_payment(placed.order)

    assert mail.outbox == []
