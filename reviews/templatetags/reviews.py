from typing import Any

from django import template

from orders.models import Order
from reviews import selectors
from reviews.forms import ReviewForm

register = template.Library()


@register.inclusion_tag("reviews/_order_review.html", takes_context=True)
def order_review(context: dict[str, Any], order: Order, token: str) -> dict[str, Any]:
    """The order page's review: the buyer's review and the merchant's reply, or the form once
    the order was delivered (not once it was refunded in full). One query."""
    review = selectors.review_for_order(order=order)
    refunded = order.status == Order.Status.REFUNDED
    return {
        "order": order,
        "token": token,
        "review": review,
        "form": ReviewForm() if review is None and not refunded else None,
        "csrf_token": context.get("csrf_token"),
    }


@register.inclusion_tag("reviews/_store_reviews.html")
def store_reviews(merchant: Any) -> dict[str, Any]:
    """The store page's average, count and latest reviews. One query."""
    return {"reviews": selectors.store_reviews(merchant=merchant)}
