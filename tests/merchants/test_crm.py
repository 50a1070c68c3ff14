"""The customer list (/merchant/customers/): buyers grouped by lower-cased e-mail with orders,
lifetime spend, first and last purchase and the repeat rate; tags and private notes; CSV; masked
e-mails; anonymised orders as one group; and no merchant ever sees another's customers."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from merchants import customers, services
from merchants.models import CustomerNote
from orders.models import Order, Payment, Refund
from orders.privacy import anonymise_order
from tests.factories import MerchantFactory, ProductFactory
from tests.merchants.orders_data import order, save_orders

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOTE_URL = "/merchant/customers/note/"
# Every merchant-centre page: user, 2FA device, membership, and other apps' module checks.
MERCHANT_PAGE_BASE_QUERIES = 5


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=SHANGHAI)


def merchant_client(merchant) -> Client:
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(merchant.owner)
    return client


def csv_rows(response) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def crm(db):
    """Alpha: Ann (three paid orders under two spellings of her address, one refunded, one in
    USD), Bob (one), Carl (placed, never paid) and one anonymised paid order. Bravo: Ann again,
    and Dora."""
    alpha = MerchantFactory(name="Alpha Store", slug="alpha")
    cny = ProductFactory(merchant=alpha, title="Alpha Widget")
    usd = ProductFactory(merchant=alpha, title="Alpha Gadget", currency="USD")
    save_orders(
        [
            order(product=cny, amount="10.00", paid_at=at(1), email="Ann@Example.com"),
            order(product=cny, amount="20.00", paid_at=at(5), email="ann@example.com"),
            order(
                product=usd,
                amount="5.00",
                currency="USD",
                paid_at=at(7),
                email="ann@example.com",
                status=Order.Status.REFUNDED,
            ),
            order(
                product=usd, amount="3.50", currency="USD", paid_at=at(2), email="ann@example.com"
            ),
            order(product=cny, amount="10.00", paid_at=at(3), email="bob@example.com"),
            order(
                product=cny,
                amount="10.00",
                paid_at=None,
                created_at=at(4),
                email="carl@example.com",
                status=Order.Status.EXPIRED,
            ),
            order(
                product=cny,
                amount="7.00",
                paid_at=at(6),
                email="anon-T1@anonymised.invalid",
                anonymised_at=at(9),
            ),
        ]
    )
    bravo = MerchantFactory(name="Bravo Store", slug="bravo")
    theirs = ProductFactory(merchant=bravo, title="Bravo Thing")
    save_orders(
        [
            order(product=theirs, amount="99.00", paid_at=at(8), email="ann@example.com"),
            order(product=theirs, amount="42.00", paid_at=at(8), email="dora@bravo.example"),
        ]
    )
    return {"alpha": alpha, "bravo": bravo}


def key_of(merchant, buyer: str) -> str:
    return customers.customer_key(merchant_id=merchant.pk, buyer=buyer)


# --- the list -----------------------------------------------------------------------------------
def test_customers_are_grouped_by_lower_cased_email_with_their_totals(crm):
    alpha = crm["alpha"]
    page, rows = customers.customer_page(merchant=alpha)

    assert page.paginator.count == 2
    assert [(c.email_masked, c.orders, c.spend) for c in rows] == [
        ("a***@example.com", 4, {"CNY": Decimal("30.00"), "USD": Decimal("3.50")}),
        ("b***@example.com", 1, {"CNY": Decimal("10.00")}),
    ]
    ann = rows[0]
    assert (ann.first_purchase, ann.last_purchase) == (at(1), at(7))
    assert ann.is_repeat
    assert ann.key == key_of(alpha, "ann@example.com")
    summary = customers.customer_summary(merchant=alpha)
    assert (summary.customers, summary.repeat_customers, summary.anonymised_orders) == (2, 1, 1)
    assert summary.repeat_rate == Decimal("0.5000")
    anonymised = summary.anonymised
    assert anonymised is not None
    assert (anonymised.email_masked, anonymised.orders, anonymised.spend) == (
        "anonymised",
        1,
        {"CNY": Decimal("7.00")},
    )


def test_the_key_computed_by_the_database_matches_pythons(crm):
    alpha = crm["alpha"]
    found = customers.customer_by_key(merchant=alpha, key=key_of(alpha, "bob@example.com"))
    assert found is not None
    assert (found.email_masked, found.orders) == ("b***@example.com", 1)


def test_sorting_and_exact_email_filter(crm):
    alpha = crm["alpha"]
    _, by_first = customers.customer_page(merchant=alpha, sort="first")
    _, by_orders = customers.customer_page(merchant=alpha, sort="orders")
    _, only_bob = customers.customer_page(merchant=alpha, email=" BOB@example.com ")

    assert [c.email_masked for c in by_first] == ["a***@example.com", "b***@example.com"]
    assert [c.orders for c in by_orders] == [4, 1]
    assert [c.email_masked for c in only_bob] == ["b***@example.com"]


def test_the_page_masks_every_email(crm):
    response = merchant_client(crm["alpha"]).get("/merchant/customers/")

    assert response.status_code == 200
    content = response.content.decode()
    assert "a***@example.com" in content
    assert "b***@example.com" in content
    assert 'data-customers="2" data-repeat="1"' in content
    assert "anonymised" in content
    for address in ("ann@example.com", "Ann@Example.com", "bob@example.com", "carl@", "anon-T1"):
        assert address not in content


# --- tags and notes -----------------------------------------------------------------------------
def test_tags_and_note_are_saved_shown_and_filterable(crm):
    alpha = crm["alpha"]
    client = merchant_client(alpha)
    ann = key_of(alpha, "ann@example.com")

    form = client.get(NOTE_URL, {"customer": ann})
    saved = client.post(
        f"{NOTE_URL}?customer={ann}", {"tags": "VIP, reseller,, vip", "note": "Pays fast"}
    )

    assert form.status_code == 200
    assert saved.status_code == 302
    note = CustomerNote.objects.get()
    assert (note.merchant, note.customer_key, note.tags, note.note) == (
        alpha,
        ann,
        ",vip,reseller,",
        "Pays fast",
    )
    assert note.updated_by == alpha.owner
    listing = client.get("/merchant/customers/").content.decode()
    assert "vip, reseller" in listing
    assert "Pays fast" in listing
    _, tagged = customers.customer_page(merchant=alpha, tag="VIP")
    assert [c.email_masked for c in tagged] == ["a***@example.com"]
    _, untagged = customers.customer_page(merchant=alpha, tag="vi")
    assert untagged == []


def test_saving_again_overwrites_and_empty_deletes(crm):
    alpha = crm["alpha"]
    ann = key_of(alpha, "ann@example.com")
    for tags, note in (("a", "first"), ("b", "second")):
        services.save_customer_note(
            merchant=alpha, customer_key=ann, tags=tags, note=note, actor=alpha.owner
        )
    assert list(CustomerNote.objects.values_list("tags", "note")) == [(",b,", "second")]

    services.save_customer_note(
        merchant=alpha, customer_key=ann, tags=" , ", note="  ", actor=alpha.owner
    )

    assert CustomerNote.objects.count() == 0


def test_tags_are_normalised_and_bounded():
    assert services.normalise_tags(" VIP ,  big   spender,vip,,") == ["vip", "big spender"]
    assert len(services.normalise_tags(",".join(f"t{i}" for i in range(30)))) == 10
    assert services.normalise_tags("x" * 50) == ["x" * 30]


# --- CSV ----------------------------------------------------------------------------------------
def test_customer_csv(crm):
    alpha = crm["alpha"]
    services.save_customer_note(
        merchant=alpha,
        customer_key=key_of(alpha, "bob@example.com"),
        tags="vip",
        note="Bob's note",
        actor=alpha.owner,
    )

    rows = csv_rows(merchant_client(alpha).get("/merchant/customers/?export=csv"))

    assert rows == [
        [
            "customer",
            "orders",
            "spend_CNY",
            "spend_USD",
            "spend_EUR",
            "spend_USDT",
            "first_purchase",
            "last_purchase",
            "tags",
            "note",
        ],
        [
            "a***@example.com",
            "4",
            "30.00",
            "3.50",
            "",
            "",
            at(1).isoformat(),
            at(7).isoformat(),
            "",
            "",
        ],
        [
            "b***@example.com",
            "1",
            "10.00",
            "",
            "",
            "",
            at(3).isoformat(),
            at(3).isoformat(),
            "vip",
            "Bob's note",
        ],
        ["anonymised", "1", "7.00", "", "", "", at(6).isoformat(), at(6).isoformat(), "", ""],
    ]


# --- isolation ----------------------------------------------------------------------------------
def test_a_merchant_never_sees_another_merchants_customers(crm):
    alpha, bravo = crm["alpha"], crm["bravo"]
    services.save_customer_note(
        merchant=bravo,
        customer_key=key_of(bravo, "ann@example.com"),
        tags="bravo-tag",
        note="Bravo's secret note",
        actor=bravo.owner,
    )
    client = merchant_client(alpha)

    pages = [
        client.get("/merchant/customers/"),
        client.get("/merchant/customers/", {"email": "dora@bravo.example"}),
        client.get("/merchant/customers/", {"tag": "bravo-tag"}),
    ]
    export = b"".join(client.get("/merchant/customers/?export=csv").streaming_content).decode()

    for text in [p.content.decode() for p in pages] + [export]:
        for marker in ("d***@bravo.example", "99.00", "42.00", "Bravo's secret"):
            assert marker not in text
    for text in (pages[0].content.decode(), export):
        assert "bravo-tag" not in text  # (the tag filter page repeats the typed tag)
    assert pages[1].context["customers"] == []
    assert pages[2].context["customers"] == []
    # Ann bought at both stores: Alpha's row counts Alpha's orders only.
    assert pages[0].context["customers"][0].orders == 4


def test_another_merchants_customer_key_opens_nothing(crm):
    alpha, bravo = crm["alpha"], crm["bravo"]
    client = merchant_client(alpha)
    dora = key_of(bravo, "dora@bravo.example")
    bravo_ann = key_of(bravo, "ann@example.com")

    for key in (dora, bravo_ann, "0" * 64, "short", ""):
        assert client.get(NOTE_URL, {"customer": key}).status_code == 404
        response = client.post(f"{NOTE_URL}?customer={key}", {"tags": "x", "note": "hijack"})
        assert response.status_code == 404
    assert CustomerNote.objects.count() == 0


@pytest.mark.parametrize(
    "url", ["/merchant/customers/", "/merchant/customers/?export=csv", NOTE_URL]
)
def test_anonymous_users_are_sent_to_the_login_page(crm, url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/merchant/login/")


# --- query budget -------------------------------------------------------------------------------
@pytest.mark.parametrize("buyers", [3, 60])
def test_customer_page_queries_do_not_grow_with_customers(
    db, buyers, django_assert_max_num_queries
):
    merchant = MerchantFactory()
    product = ProductFactory(merchant=merchant)
    save_orders(
        [
            order(
                product=product,
                amount="1.00",
                paid_at=at(1 + i % 20),
                email=f"b{i % buyers}@example.com",
            )
            for i in range(buyers * 2)
        ]
    )
    client = merchant_client(merchant)
    client.get("/merchant/")

    with (
        django_assert_max_num_queries(MERCHANT_PAGE_BASE_QUERIES + 5),
        CaptureQueriesContext(connection) as queries,
    ):
        response = client.get("/merchant/customers/")

    # count, page, notes, summary with the anonymised group (two): nothing per customer
    ours = [
        q for q in queries.captured_queries if re.search(r"orders_order|customernote", q["sql"])
    ]
    assert len(ours) == 5

    assert len(response.context["customers"]) == min(buyers, customers.CUSTOMERS_PER_PAGE)


# --- CSV injection ------------------------------------------------------------------------------
def test_customer_csv_neutralises_formula_cells(crm):
    alpha = crm["alpha"]
    product = ProductFactory(merchant=alpha, title="Plain")
    save_orders([order(product=product, amount="1.00", paid_at=at(8), email="=evil@example.com")])
    services.save_customer_note(
        merchant=alpha,
        customer_key=key_of(alpha, "=evil@example.com"),
        tags='=cmd|"/c calc"!A0, ok',
        note="+SUM(1+1)",
        actor=alpha.owner,
    )
    services.save_customer_note(
        merchant=alpha,
        customer_key=key_of(alpha, "bob@example.com"),
        tags="vip",
        note="@import",
        actor=alpha.owner,
    )

    rows = csv_rows(merchant_client(alpha).get("/merchant/customers/?export=csv"))

    evil = rows[1]
    assert evil[0] == "'=***@example.com"
    assert evil[-2:] == ['\'=cmd|"/c calc"!a0,ok', "'+SUM(1+1)"]
    bob = next(row for row in rows if row[0] == "b***@example.com")
    assert bob[-1] == "'@import"
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


# --- erasure ------------------------------------------------------------------------------------
def test_notes_go_when_the_buyers_last_order_at_the_store_is_erased(crm):
    alpha, bravo = crm["alpha"], crm["bravo"]
    for merchant, buyer in (
        (alpha, "ann@example.com"),
        (alpha, "bob@example.com"),
        (bravo, "ann@example.com"),
    ):
        services.save_customer_note(
            merchant=merchant,
            customer_key=key_of(merchant, buyer),
            tags="vip",
            note="note",
            actor=merchant.owner,
        )
    now = timezone.now()

    def erase(email: str) -> None:
        for pk in Order.objects.filter(merchant=alpha, email__iexact=email).values_list(
            "pk", flat=True
        ):
            assert anonymise_order(order_id=pk, settled_before=now + timedelta(days=1), now=now)

    erase("bob@example.com")
    ann_orders = list(
        Order.objects.filter(merchant=alpha, email__iexact="ann@example.com").order_by("pk")
    )
    assert anonymise_order(
        order_id=ann_orders[0].pk, settled_before=now + timedelta(days=1), now=now
    )

    remaining = set(CustomerNote.objects.values_list("merchant_id", "customer_key"))
    # Bob's only order is erased: his note went. Ann still has orders under her address here
    # (another spelling, "ann@…", included): hers stays.
    assert remaining == {
        (alpha.pk, key_of(alpha, "ann@example.com")),
        (bravo.pk, key_of(bravo, "ann@example.com")),
    }

    erase("ann@example.com")
    assert set(CustomerNote.objects.values_list("merchant_id", "customer_key")) == {
        (bravo.pk, key_of(bravo, "ann@example.com"))  # another store's note is theirs
    }


def test_lifetime_spend_is_net_of_partial_refunds(crm):
    alpha = crm["alpha"]
    bob_order = Order.objects.get(merchant=alpha, email="bob@example.com")
    Order.objects.filter(pk=bob_order.pk).update(status=Order.Status.PARTIALLY_REFUNDED)
    payment = Payment.objects.create(
        reference="PAY-BOB",
        order=bob_order,
        gateway="sandbox",
        amount=bob_order.amount,
        currency="CNY",
        status=Payment.Status.SUCCEEDED,
    )
    for request_id, amount, status in (
        ("r1", "2.50", Refund.Status.SUCCEEDED),
        ("r2", "1.50", Refund.Status.MANUAL),
        ("r3", "5.00", Refund.Status.FAILED),  # never paid back: still spent
    ):
        Refund.objects.create(
            request_id=request_id,
            order=bob_order,
            payment=payment,
            amount=Decimal(amount),
            currency="CNY",
            status=status,
            reason="partly unusable",
            source="test",
        )

    _, rows = customers.customer_page(merchant=alpha, email="bob@example.com")

    assert rows[0].spend == {"CNY": Decimal("6.00")}  # 10.00 − 2.50 − 1.50
    assert rows[0].orders == 1
