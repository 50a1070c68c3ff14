"""Products are screened against the staff's prohibited terms: a hit holds the product for
review (not listed, not sellable) until staff release it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from shop import services as shop_services
from shop.exceptions import ProductReviewRefused, ProductUnavailable
from shop.models import Product, ProhibitedTerm
from tests.conftest import place
from tests.factories import MerchantFactory, ProductFactory, add_keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def terms(db):
    ProhibitedTerm.objects.create(term="casino")
    ProhibitedTerm.objects.create(term="外挂")
    ProhibitedTerm.objects.create(term="retired", is_active=False)


@pytest.fixture
def merchant(db):
    return MerchantFactory(slug="shop", name="Shop")


@pytest.fixture
def merchant_client(merchant):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(merchant.owner)
    return client


def product_post(**overrides):
    data = {
        "title": "Game card",
        "slug": "game-card",
        "variant_label": "",
        "description": "",
        "how_to_use": "",
        "price": "10.00",
        "currency": "CNY",
        "is_active": "on",
        "min_quantity": "1",
        "max_quantity": "5",
        "delivery_mode": "auto",
        "manual_fields": "[]",
        "sort_order": "0",
    }
    data.update(overrides)
    return data


def storefront(merchant) -> str:
    return Client().get(f"/s/{merchant.slug}/").content.decode()


def test_merchant_admin_holds_a_product_with_a_prohibited_term(terms, merchant, merchant_client):
    response = merchant_client.post(
        "/merchant/shop/product/add/",
        product_post(title="Lucky chips", how_to_use="Redeem at the CASINO desk"),
        follow=True,
    )

    assert response.status_code == 200
    assert "held for review" in response.content.decode()
    product = Product.objects.get(slug="game-card")
    assert product.review_status == Product.ReviewStatus.HELD
    assert product.review_term == "casino"
    add_keys(product, 2)
    assert "Lucky chips" not in storefront(merchant)
    assert Client().get(f"/s/{merchant.slug}/p/game-card/").status_code == 404
    assert "Lucky chips" not in Client().get("/search/?q=Lucky").content.decode()
    with pytest.raises(ProductUnavailable):
        place(product)


def test_a_clean_product_is_published(terms, merchant, merchant_client):
    merchant_client.post("/merchant/shop/product/add/", product_post(title="Retired game"))
    product = Product.objects.get(slug="game-card")
    assert product.review_status == Product.ReviewStatus.PUBLISHED
    assert product.review_term == ""


def test_width_and_case_do_not_hide_a_term(terms, merchant):
    product = shop_services.create_product(
        merchant=merchant, slug="p", title="ＣＡＳＩＮＯ night", price=Decimal("5.00")
    )
    assert (product.review_status, product.review_term) == (Product.ReviewStatus.HELD, "casino")
    chinese = shop_services.create_product(
        merchant=merchant, slug="q", title="游戏", description="免费外挂下载", price=Decimal("5")
    )
    assert (chinese.review_status, chinese.review_term) == (Product.ReviewStatus.HELD, "外挂")


def test_editing_a_published_product_to_add_a_term_holds_it(terms, merchant, merchant_client):
    product = ProductFactory(merchant=merchant, slug="game-card", title="Game card")
    add_keys(product, 1)
    assert "Game card" in storefront(merchant)

    merchant_client.post(
        f"/merchant/shop/product/{product.pk}/change/",
        product_post(description="now with casino bonus"),
    )

    product.refresh_from_db()
    assert product.review_status == Product.ReviewStatus.HELD
    assert "Game card" not in storefront(merchant)


def test_staff_release_lists_the_product_again(terms, merchant, staff_client):
    product = shop_services.create_product(
        merchant=merchant, slug="chips", title="Casino chips", price=Decimal("10.00")
    )
    add_keys(product, 2)
    assert "Casino chips" not in storefront(merchant)
    changelist = staff_client.get("/admin/shop/product/?review_status__exact=held")
    assert "Casino chips" in changelist.content.decode()

    response = staff_client.post(
        "/admin/shop/product/",
        {"action": "release_products", "_selected_action": [product.pk]},
        follow=True,
    )

    assert response.status_code == 200
    product.refresh_from_db()
    assert product.review_status == Product.ReviewStatus.PUBLISHED
    assert "Casino chips" in storefront(merchant)
    assert place(product).order.product == product


def test_staff_reject_keeps_it_off_and_an_edit_returns_it_to_review(
    terms, merchant, merchant_client, staff_client
):
    product = shop_services.create_product(
        merchant=merchant, slug="game-card", title="Casino chips", price=Decimal("10.00")
    )
    url = "/admin/shop/product/"
    ask = staff_client.post(url, {"action": "reject_products", "_selected_action": [product.pk]})
    assert ask.status_code == 200
    assert "Reason" in ask.content.decode()
    product.refresh_from_db()
    assert product.review_status == Product.ReviewStatus.HELD

    staff_client.post(
        url,
        {
            "action": "reject_products",
            "_selected_action": [product.pk],
            "apply": "1",
            "reason": "Gambling is not allowed.",
        },
    )

    product.refresh_from_db()
    assert (product.review_status, product.review_note) == (
        Product.ReviewStatus.REJECTED,
        "Gambling is not allowed.",
    )
    with pytest.raises(ProductUnavailable):
        place(product)
    # The merchant cleans the text: back to review, still not listed until staff release it.
    merchant_client.post(
        f"/merchant/shop/product/{product.pk}/change/", product_post(title="Poker chips")
    )
    product.refresh_from_db()
    assert product.review_status == Product.ReviewStatus.HELD
    assert product.review_term == "casino"  # what it was held for, kept for the reviewer
    with pytest.raises(ProductReviewRefused):
        shop_services.reject_product(product_id=product.pk, reason="")


def test_a_variant_of_a_held_listing_is_not_sellable(terms, merchant):
    listing = shop_services.create_product(
        merchant=merchant, slug="chips", title="Casino chips", price=Decimal("10.00")
    )
    variant = ProductFactory(
        merchant=merchant, slug="chips-big", title="Chips", variant_of=listing, variant_label="Big"
    )
    add_keys(variant, 1)

    assert Client().get(f"/s/{merchant.slug}/p/chips-big/").status_code == 404
    with pytest.raises(ProductUnavailable):
        place(Product.objects.select_related("variant_of").get(pk=variant.pk))


def test_prohibited_terms_are_edited_in_the_staff_admin(staff_client):
    response = staff_client.post(
        "/admin/shop/prohibitedterm/add/", {"term": "counterfeit", "is_active": "on", "note": ""}
    )
    assert response.status_code == 302
    assert ProhibitedTerm.objects.filter(term="counterfeit", is_active=True).exists()


# --- the merchant is told why: status and reason in the merchant centre, and an e-mail ----------
def reject(staff_client, product, reason: str):
    return staff_client.post(
        "/admin/shop/product/",
        {
            "action": "reject_products",
            "_selected_action": [product.pk],
            "apply": "1",
            "reason": reason,
        },
    )


def test_a_rejection_is_emailed_and_shown_to_the_merchant_read_only(
    terms, merchant, merchant_client, staff_client, mailoutbox, django_capture_on_commit_callbacks
):
    product = shop_services.create_product(
        merchant=merchant, slug="game-card", title="Casino chips", price=Decimal("10.00")
    )
    mailoutbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        reject(staff_client, product, "Gambling <chips> are not allowed.")

    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == [merchant.owner.email]
    assert message.subject == "Product rejected: Casino chips"
    assert "Reason: Gambling <chips> are not allowed." in message.body
    assert f"/merchant/shop/product/{product.pk}/change/" in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert "Gambling &lt;chips&gt; are not allowed." in html

    changelist = merchant_client.get("/merchant/shop/product/?review_status__exact=rejected")
    page = changelist.content.decode()
    assert "Rejected by staff" in page
    assert "Gambling &lt;chips&gt; are not allowed." in page
    change = merchant_client.get(f"/merchant/shop/product/{product.pk}/change/")
    fields = change.context["adminform"].form.fields
    assert "review_status" not in fields
    assert "review_note" not in fields
    assert "Gambling &lt;chips&gt; are not allowed." in change.content.decode()

    # A forged post cannot publish it: the clean edit goes back to staff review.
    merchant_client.post(
        f"/merchant/shop/product/{product.pk}/change/",
        product_post(title="Poker chips", review_status="published", review_note=""),
    )
    product.refresh_from_db()
    assert product.review_status == Product.ReviewStatus.HELD


def test_a_hold_is_emailed_once_with_the_term_and_shown_to_the_merchant(
    terms, merchant, merchant_client, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        merchant_client.post(
            "/merchant/shop/product/add/", product_post(title="Lucky chips", how_to_use="casino")
        )
    product = Product.objects.get(slug="game-card")

    assert [m.subject for m in mailoutbox] == ["Product held for review: Lucky chips"]
    assert "prohibited term “casino”" in mailoutbox[0].body
    change = merchant_client.get(f"/merchant/shop/product/{product.pk}/change/")
    assert "Held for review" in change.content.decode()
    assert "prohibited term “casino”" in change.content.decode()

    # Editing it while it is held (still matching) does not send another notice.
    with django_capture_on_commit_callbacks(execute=True):
        merchant_client.post(
            f"/merchant/shop/product/{product.pk}/change/",
            product_post(title="Lucky chips 2", how_to_use="casino"),
        )
    assert len(mailoutbox) == 1


def test_the_held_reason_follows_the_current_text(terms, merchant, merchant_client, staff_client):
    product = shop_services.create_product(
        merchant=merchant, slug="game-card", title="Casino chips", price=Decimal("10.00")
    )
    reject(staff_client, product, "No gambling.")
    merchant_client.post(
        f"/merchant/shop/product/{product.pk}/change/", product_post(title="Poker chips")
    )

    page = merchant_client.get(f"/merchant/shop/product/{product.pk}/change/").content.decode()

    assert "Your changes are waiting for the platform&#x27;s staff to review them." in page
    assert "prohibited term" not in page


def test_a_notice_about_a_product_released_meanwhile_is_not_sent(
    terms, merchant, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        product = shop_services.create_product(
            merchant=merchant, slug="chips", title="Casino chips", price=Decimal("10.00")
        )
    shop_services.release_product(product_id=product.pk)

    for callback in callbacks:
        callback()

    assert len(callbacks) == 2  # one task per channel
    assert mailoutbox == []


def test_a_product_notice_task_delivered_twice_sends_once(
    terms, merchant, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        shop_services.create_product(
            merchant=merchant, slug="chips", title="Casino chips", price=Decimal("10.00")
        )

    for callback in [*callbacks, *callbacks]:
        callback()

    assert len(mailoutbox) == 1


def test_the_product_list_reads_the_terms_once_for_all_held_products(
    terms, merchant, merchant_client, django_assert_max_num_queries
):
    held = Product.ReviewStatus.HELD
    for i in range(3):
        ProductFactory(merchant=merchant, slug=f"p{i}", title=f"casino {i}", review_status=held)
    merchant_client.get("/merchant/shop/product/")  # warm: sessions, permissions
    with django_assert_max_num_queries(20) as captured:
        response = merchant_client.get("/merchant/shop/product/")
    # One more held product costs no more queries.
    ProductFactory(merchant=merchant, slug="p9", title="casino 9", review_status=held)
    with django_assert_max_num_queries(len(captured)):
        again = merchant_client.get("/merchant/shop/product/")

    assert response.status_code == again.status_code == 200
    assert again.content.decode().count("prohibited term “casino”") == 4
