from django.utils.translation import gettext_lazy as _

from shop.exceptions import CardvaultError


class ReviewNotAllowed(CardvaultError):
    user_message = _("This order cannot be reviewed.")


class RefundedNotReviewable(ReviewNotAllowed):
    user_message = _("A refunded order cannot be reviewed.")


class AlreadyReviewed(CardvaultError):
    user_message = _("This order has already been reviewed.")


class AlreadyReplied(CardvaultError):
    user_message = _("This review already has a reply.")


class InvalidReview(CardvaultError):
    user_message = _("Give a rating from 1 to 5.")
