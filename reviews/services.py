"""Writes of reviews: the buyer rates a delivered order once, the merchant replies once, staff
hide or show reviews. "Once" is the database's promise: the review's one-to-one order column for
the rating, a conditional update on an empty reply for the reply."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from orders.models import Order
from reviews.exceptions import (
    AlreadyReplied,
    AlreadyReviewed,
    InvalidReview,
    RefundedNotReviewable,
    ReviewNotAllowed,
)
from reviews.models import COMMENT_MAX_LENGTH, REPLY_MAX_LENGTH, Review

# Control characters other than tab and newline never belong in a comment.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_text(text: str, *, max_length: int) -> str:
    """Plain text as stored: newlines normalised, control characters dropped, trimmed. Markup is
    kept as typed and escaped on every page that shows it."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    return text[:max_length]


def submit_review(*, order: Order, rating: int, comment: str) -> Review:
    """Rate a delivered order (1–5) with an optional comment.

    Locks nothing: the unique order column decides between two submissions at once.
    Raises ``ReviewNotAllowed`` before delivery, ``RefundedNotReviewable`` once the order was
    refunded in full (the buyer has their money back; a partial refund still allows a review),
    ``AlreadyReviewed`` for a second review and ``InvalidReview`` for a rating outside 1–5."""
    if order.delivered_at is None:
        raise ReviewNotAllowed("order not delivered", order_id=order.pk)
    if order.status == Order.Status.REFUNDED:
        raise RefundedNotReviewable("order refunded", order_id=order.pk)
    if not 1 <= rating <= 5:
        raise InvalidReview("rating out of range", rating=rating)
    review = Review(
        order=order,
        merchant_id=order.merchant_id,
        product_id=order.product_id,
        rating=rating,
        comment=clean_text(comment, max_length=COMMENT_MAX_LENGTH),
    )
    review.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            review.save(force_insert=True)
    except IntegrityError as exc:
        raise AlreadyReviewed("order already reviewed", order_id=order.pk) from exc
    return review


def reply_to_review(*, review: Review, reply: str, actor: User) -> Review:
    """The merchant's one reply. A single ``UPDATE … WHERE reply = ''``: of two replies at once
    exactly one lands. The caller scopes ``review`` to the actor's merchant. Raises
    ``AlreadyReplied``, or ``InvalidReview`` for an empty reply."""
    text = clean_text(reply, max_length=REPLY_MAX_LENGTH)
    if not text:
        raise InvalidReview("empty reply", review_id=review.pk)
    now = timezone.now()
    updated = Review.objects.filter(pk=review.pk, reply="").update(
        reply=text, replied_at=now, replied_by=actor
    )
    if updated != 1:
        raise AlreadyReplied("review already replied", review_id=review.pk)
    review.reply, review.replied_at, review.replied_by = text, now, actor
    return review


def set_reviews_hidden(*, review_ids: list[int], hidden: bool, actor: User) -> int:
    """Staff moderation: hide (or show again) reviews. Returns how many changed."""
    now = timezone.now()
    rows = Review.objects.filter(pk__in=review_ids).exclude(is_hidden=hidden)
    if hidden:
        return rows.update(is_hidden=True, hidden_at=now, hidden_by=actor)
    return rows.update(is_hidden=False, hidden_at=None, hidden_by=None)
