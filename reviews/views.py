from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from orders import selectors as order_selectors
from reviews import services
from reviews.forms import ReviewForm
from shop.exceptions import CardvaultError


@require_POST
def submit_review(request: HttpRequest, token: str) -> HttpResponse:
    """The review form of the order page (/o/<token>/): the token is the buyer's only key."""
    order = order_selectors.get_order_by_token(token=token)
    if order is None:
        raise Http404
    form = ReviewForm(request.POST)
    if not form.is_valid():
        if "rating" in form.errors:
            messages.error(request, _("Give a rating from 1 to 5."))
        for message in form.errors.get("comment", []):
            messages.error(request, str(message))  # e.g. too long, with the length allowed
    else:
        try:
            services.submit_review(
                order=order,
                rating=form.cleaned_data["rating"],
                comment=form.cleaned_data["comment"],
            )
        except CardvaultError as exc:
            messages.error(request, exc.user_message)
        else:
            messages.success(request, _("Thank you for your review."))
    return redirect("orders:detail", token=token)
