"""Reviews: the buyer rates a delivered order once from its page, the merchant replies once from
the merchant centre, staff hide abusive reviews, and the store page shows the average, the count
and the latest visible reviews in one query."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orders import services as order_services
from orders.models import Order
from reviews import selectors, services
from reviews.exceptions import (
    AlreadyReplied,
    AlreadyReviewed,
    InvalidReview,
    RefundedNotReviewable,
    ReviewNotAllowed,
)
from reviews.models import Review
from tests.conftest import open_payment, place
from tests.factories import MerchantFactory, ProductFactory, add_keys
from tests.reviews.conftest import delivered
from tests.shop.test_storefront import STORE_QUERIES
from tests.test_helpers_payments import pay


def english_client() -> Client:
    return Client(headers={"Accept-Language": "en"})


def order_url(token: str) -> str:
    return reverse("orders:detail", args=[token])


def review_url(token: str) -> str:
    return reverse("reviews:submit", args=[token])


def store_url(merchant) -> str:
    return reverse("shop:store", args=[merchant.slug])


def review_of(placed, rating: int, comment: str = "") -> Review:
    return services.submit_review(order=placed.order, rating=rating, comment=comment)


# --- the buyer rates once -----------------------------------------------------------------------
def test_buyer_reviews_a_paid_and_delivered_order_once_from_its_page(stocked_product):
    client = english_client()
    placed = place(stocked_product)
    pay(open_payment(placed.order))
    page = client.get(order_url(placed.token))
    assert 'data-testid="review-form"' in page.content.decode()

    first = client.post(review_url(placed.token), {"rating": "4", "comment": "Works fine"})
    second = client.post(review_url(placed.token), {"rating": "1", "comment": "changed my mind"})

    assert first.status_code == 302
    assert first["Location"] == order_url(placed.token)
    assert second.status_code == 302
    review = Review.objects.get()
    assert (review.order_id, review.rating, review.comment) == (placed.order.pk, 4, "Works fine")
    assert review.merchant_id == stocked_product.merchant_id
    assert review.product_id == stocked_product.pk
    after = client.get(order_url(placed.token)).content.decode()
    assert 'data-testid="review-form"' not in after
    assert 'data-rating="4"' in after
    assert "This order has already been reviewed." in after


def test_a_second_review_is_refused_by_the_database(product):
    placed = delivered(product)
    review_of(placed, 5)

    with pytest.raises(AlreadyReviewed):
        review_of(placed, 1)

    assert Review.objects.filter(order=placed.order).count() == 1
    assert Review.objects.get().rating == 5


def test_an_undelivered_order_cannot_be_reviewed(stocked_product):
    client = english_client()
    placed = place(stocked_product)

    page = client.get(order_url(placed.token))
    response = client.post(review_url(placed.token), {"rating": "5"})

    assert 'data-testid="review-form"' not in page.content.decode()
    assert response.status_code == 302
    assert Review.objects.count() == 0
    with pytest.raises(ReviewNotAllowed):
        review_of(placed, 5)


@pytest.mark.parametrize("rating", ["0", "6", "-1", "x", ""])
def test_ratings_outside_one_to_five_are_refused(product, rating):
    placed = delivered(product)

    english_client().post(review_url(placed.token), {"rating": rating})

    assert Review.objects.count() == 0


def test_the_service_refuses_a_rating_outside_one_to_five(product):
    placed = delivered(product)
    with pytest.raises(InvalidReview):
        review_of(placed, 6)
    assert Review.objects.count() == 0


def test_the_database_refuses_a_rating_outside_one_to_five(product):
    from django.db import IntegrityError, transaction

    placed = delivered(product)
    with pytest.raises(IntegrityError), transaction.atomic():
        Review.objects.create(
            order=placed.order, merchant=product.merchant, product=product, rating=0
        )


def test_an_unknown_token_is_a_404(db):
    response = english_client().post(review_url("0" * 64), {"rating": "5"})
    assert response.status_code == 404
    assert Review.objects.count() == 0


def test_comments_are_plain_text_escaped_on_every_page(product):
    placed = delivered(product)
    review_of(placed, 2, "<script>alert(1)</script>\r\n<b>bold</b>\x07")

    store = english_client().get(store_url(product.merchant)).content.decode()
    order = english_client().get(order_url(placed.token)).content.decode()

    assert Review.objects.get().comment == "<script>alert(1)</script>\n<b>bold</b>"
    for page in (store, order):
        assert "<script>alert(1)" not in page
        assert "<b>bold</b>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;<br>&lt;b&gt;bold&lt;/b&gt;" in page


# --- refunds: a buyer refunded in full has their money back and no review to give -------------
def test_a_fully_refunded_order_cannot_be_reviewed(stocked_product):
    client = english_client()
    placed = place(stocked_product)
    pay(open_payment(placed.order))
    order_services.request_refund(
        request_id="review-full", order_id=placed.order.pk, reason="keys did not work", source="t"
    )
    order = Order.objects.get(pk=placed.order.pk)
    assert order.status == Order.Status.REFUNDED

    page = client.get(order_url(placed.token)).content.decode()
    response = client.post(review_url(placed.token), {"rating": "1", "comment": "refund me"})

    assert 'data-testid="review-form"' not in page
    assert response.status_code == 302
    assert Review.objects.count() == 0
    assert (
        "A refunded order cannot be reviewed."
        in client.get(order_url(placed.token)).content.decode()
    )
    with pytest.raises(RefundedNotReviewable):
        services.submit_review(order=order, rating=1, comment="")


def test_a_partially_refunded_order_can_still_be_reviewed(stocked_product):
    placed = place(stocked_product)
    pay(open_payment(placed.order))
    order_services.request_refund(
        request_id="review-part",
        order_id=placed.order.pk,
        reason="one key was used",
        source="t",
        amount=Decimal("0.01"),
    )
    order = Order.objects.get(pk=placed.order.pk)
    assert order.status == Order.Status.PARTIALLY_REFUNDED

    review = services.submit_review(order=order, rating=3, comment="sorted out")

    assert review.rating == 3


def test_a_review_written_before_a_full_refund_stays_on_the_store_page(stocked_product):
    placed = place(stocked_product)
    pay(open_payment(placed.order))
    services.submit_review(order=Order.objects.get(pk=placed.order.pk), rating=2, comment="meh")

    order_services.request_refund(
        request_id="review-after", order_id=placed.order.pk, reason="x", source="t"
    )

    assert selectors.store_reviews(merchant=stocked_product.merchant).count == 1
    order_page = english_client().get(order_url(placed.token)).content.decode()
    assert 'data-rating="2"' in order_page


def test_the_token_of_another_order_reviews_that_order_only(product):
    mine, theirs = delivered(product), delivered(product, email="other@example.com")

    english_client().post(review_url(theirs.token), {"rating": "5"})

    assert list(Review.objects.values_list("order_id", flat=True)) == [theirs.order.pk]
    assert not Review.objects.filter(order=mine.order).exists()


def test_the_review_form_needs_a_post_and_csrf(product):
    placed = delivered(product)
    client = Client(enforce_csrf_checks=True, headers={"Accept-Language": "en"})

    assert client.get(review_url(placed.token)).status_code == 405
    assert client.post(review_url(placed.token), {"rating": "5"}).status_code == 403
    assert Review.objects.count() == 0


# --- the merchant replies once ------------------------------------------------------------------
def merchant_client(merchant) -> Client:
    client = english_client()
    client.force_login(merchant.owner)
    return client


def change_url(review: Review) -> str:
    return f"/merchant/reviews/review/{review.pk}/change/"


def test_merchant_replies_once_from_the_merchant_centre(product):
    review = review_of(delivered(product), 3, "slow")
    client = merchant_client(product.merchant)
    assert 'name="reply"' in client.get(change_url(review)).content.decode()

    first = client.post(change_url(review), {"reply": "Sorry, fixed now."})
    second = client.post(change_url(review), {"reply": "Changed reply"})

    assert first.status_code == 302
    assert second.status_code == 302
    review.refresh_from_db()
    assert review.reply == "Sorry, fixed now."
    assert review.replied_by == product.merchant.owner
    assert review.replied_at is not None
    assert 'name="reply"' not in client.get(change_url(review)).content.decode()
    assert "Sorry, fixed now." in english_client().get(store_url(product.merchant)).content.decode()


def test_a_second_reply_is_refused_by_the_service(product):
    review = review_of(delivered(product), 3)
    services.reply_to_review(review=review, reply="first", actor=product.merchant.owner)

    with pytest.raises(AlreadyReplied):
        services.reply_to_review(
            review=Review.objects.get(pk=review.pk), reply="second", actor=product.merchant.owner
        )

    assert Review.objects.get(pk=review.pk).reply == "first"


def test_an_empty_reply_is_refused(product):
    review = review_of(delivered(product), 3)
    with pytest.raises(InvalidReview):
        services.reply_to_review(review=review, reply="   ", actor=product.merchant.owner)
    assert Review.objects.get(pk=review.pk).reply == ""


def test_another_merchant_can_neither_see_nor_reply(product):
    review = review_of(delivered(product), 1, "Alpha-only comment")
    other = MerchantFactory()
    client = merchant_client(other)

    listing = client.get("/merchant/reviews/review/")
    page = client.get(change_url(review))
    post = client.post(change_url(review), {"reply": "hijack"})

    assert listing.status_code == 200
    assert "Alpha-only comment" not in listing.content.decode()
    assert page.status_code == 302  # the admin's "no such object" redirect to the index
    assert post.status_code == 302
    assert Review.objects.get(pk=review.pk).reply == ""


# --- staff hide, the store page shows -----------------------------------------------------------
def test_store_average_count_and_latest_exclude_hidden_reviews(product, staff_client):
    merchant = product.merchant
    reviews = [
        review_of(delivered(product), rating, f"comment {rating}") for rating in (5, 4, 4, 1)
    ]
    abusive = reviews[-1]

    response = staff_client.post(
        "/admin/reviews/review/",
        {"action": "hide_selected", "_selected_action": [str(abusive.pk)], "index": "0"},
    )

    assert response.status_code == 302
    abusive.refresh_from_db()
    assert abusive.is_hidden
    summary = selectors.store_reviews(merchant=merchant)
    assert (summary.average, summary.count) == (Decimal("4.3"), 3)
    assert [r.pk for r in summary.latest] == [reviews[2].pk, reviews[1].pk, reviews[0].pk]
    page = english_client().get(store_url(merchant)).content.decode()
    assert 'data-average="4.3" data-count="3"' in page
    assert "comment 1" not in page
    assert "comment 5" in page


def test_staff_can_show_a_hidden_review_again(product, staff_client):
    review = review_of(delivered(product), 2)
    services.set_reviews_hidden(review_ids=[review.pk], hidden=True, actor=None)  # type: ignore[arg-type]

    staff_client.post(
        "/admin/reviews/review/",
        {"action": "show_selected", "_selected_action": [str(review.pk)], "index": "0"},
    )

    review.refresh_from_db()
    assert (review.is_hidden, review.hidden_at) == (False, None)
    assert selectors.store_reviews(merchant=product.merchant).count == 1


def test_merchants_cannot_hide_reviews(product):
    review = review_of(delivered(product), 1)
    client = merchant_client(product.merchant)

    client.post(
        "/merchant/reviews/review/",
        {"action": "hide_selected", "_selected_action": [str(review.pk)], "index": "0"},
    )
    client.post(change_url(review), {"is_hidden": "on", "reply": "ok"})

    assert Review.objects.get(pk=review.pk).is_hidden is False


def test_a_store_without_reviews_shows_no_review_section(product):
    page = english_client().get(store_url(product.merchant)).content.decode()
    summary = selectors.store_reviews(merchant=product.merchant)
    assert (summary.average, summary.count, summary.latest) == (None, 0, [])
    assert 'class="store-reviews"' not in page


def test_reviews_of_another_store_are_not_shown(product):
    review_of(delivered(product), 5, "Alpha praise")
    other = ProductFactory()
    add_keys(other, 1)

    page = english_client().get(store_url(other.merchant)).content.decode()

    assert "Alpha praise" not in page
    assert selectors.store_reviews(merchant=other.merchant).count == 0


@pytest.mark.parametrize("count", [2, 30])
def test_store_page_queries_do_not_grow_with_reviews(product, count, django_assert_max_num_queries):
    for index in range(count):
        review_of(delivered(product, email=f"b{index}@example.com"), 1 + index % 5, f"c{index}")
    client = english_client()

    with django_assert_max_num_queries(STORE_QUERIES):
        response = client.get(store_url(product.merchant))
    with CaptureQueriesContext(connection) as queries:
        client.get(store_url(product.merchant))

    review_queries = [q for q in queries.captured_queries if "reviews_review" in q["sql"]]
    assert len(review_queries) == 1
    assert response.content.decode().count('class="review"') == min(
        count, selectors.STORE_REVIEWS_SHOWN
    )


def test_a_too_long_comment_is_refused_with_the_reason(product):
    placed = delivered(product)
    client = english_client()

    client.post(review_url(placed.token), {"rating": "5", "comment": "x" * 1001})

    page = client.get(order_url(placed.token)).content.decode()
    assert Review.objects.count() == 0
    assert "at most 1000 characters" in page
    assert "Give a rating from 1 to 5." not in page
