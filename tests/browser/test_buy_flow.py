"""A buyer's whole journey in a real browser (Debian's Chromium through Playwright): storefront →
product → order form → sandbox pay page → order page with the keys.

The sandbox pay page notifies the shop server to server: the live server posts the signed
callback to itself, at the host the browser used, exactly as a real gateway would."""

import time
from pathlib import Path

import pytest
from django.db import connections

from orders.models import Order
from shop.models import CardKey
from tests.factories import CategoryFactory, MerchantFactory, ProductFactory, add_keys

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
TIMEOUT_MS = 15_000


@pytest.fixture
def browser_page(monkeypatch):
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM}")
    # Playwright's sync API keeps an asyncio loop in this thread, which makes Django refuse ORM
    # calls from the test body; the standard escape hatch for browser tests.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(locale="en-US")
            context.set_default_timeout(TIMEOUT_MS)
            yield context.new_page()
            context.close()
        finally:
            browser.close()
            # Inside Playwright's loop Django's per-context connection storage hands the test a
            # connection of its own; close it, or the test database cannot be dropped.
            connections.close_all()


def test_buyer_pays_in_the_sandbox_and_sees_the_keys(transactional_db, live_server, browser_page):
    started = time.perf_counter()
    page = browser_page
    merchant = MerchantFactory(name="Browser Store", announcement="Keys in seconds.")
    category = CategoryFactory(merchant=merchant, name="Gift cards")
    ProductFactory(merchant=merchant, category=category, title="Decoy card")
    product = ProductFactory(merchant=merchant, category=category, title="Steam Wallet 50")
    plaintexts = add_keys(product, 4, prefix="STEAM")

    page.goto(live_server.url + "/")
    page.get_by_role("link", name="Browser Store").click()
    page.wait_for_url(f"**/s/{merchant.slug}/")
    assert page.locator(".announcement").inner_text().strip() == "Keys in seconds."

    page.get_by_role("link", name="Steam Wallet 50").click()
    page.wait_for_url(f"**/s/{merchant.slug}/p/{product.slug}/")
    form = page.locator("form.buy")
    form.locator("input[name=quantity]").fill("2")
    form.locator("input[name=email]").fill("browser-buyer@example.com")
    assert form.locator("input[name=gateway][value=sandbox]").is_checked()
    form.locator("button[type=submit]:not([name=check_price])").click()

    page.wait_for_url("**/pay/sandbox/**")
    order = Order.objects.get()
    assert order.number in page.locator(".sandbox").inner_text()
    assert order.status == Order.Status.PENDING
    page.locator("button[name=outcome][value=paid]").click()

    page.wait_for_url("**/o/*/")
    page.locator("code.key").first.wait_for()
    shown = [text.strip() for text in page.locator("code.key").all_inner_texts()]
    assert shown == plaintexts[:2]
    assert page.locator("[data-status]").get_attribute("data-status") == Order.Status.DELIVERED
    assert page.locator("button.copy").count() == 2
    assert page.locator("a[href$='keys.txt']").count() == 1

    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert order.email == "browser-buyer@example.com"
    assert order.keys_first_viewed_at is not None
    assert CardKey.objects.filter(order=order, status=CardKey.Status.SOLD).count() == 2
    elapsed = time.perf_counter() - started
    print(f"\nbrowser buy flow: {elapsed:.2f}s")
