from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from affiliates import selectors as affiliate_selectors
from affiliates import services as affiliate_services
from merchants import services as merchant_services
from merchants.models import Merchant
from orders import services as order_services
from orders.exceptions import InvalidOrderInput
from orders.gateways.registry import available_gateways
from promotions import selectors as promotions_selectors
from promotions import views as promotions_views
from risk import captcha, device
from risk.exceptions import CaptchaRequired
from security.ratelimit import rate_limit
from shop import cache as storefront_cache
from shop import selectors
from shop.client_ip import client_ip, is_mobile
from shop.exceptions import CardvaultError
from shop.forms import BuyForm, SearchForm


def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "shop/home.html",
        {"merchants": selectors.active_merchants(), "search_form": SearchForm()},
    )


def search(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    products = list(selectors.search_products(query=query))
    return render(
        request,
        "shop/search.html",
        {"search_form": form, "query": query, "products": products},
    )


def store(request: HttpRequest, slug: str) -> HttpResponse:
    merchant = selectors.get_active_merchant(slug=slug)
    if merchant is None:
        raise Http404
    built: dict[str, Any] = {}

    def catalogue() -> str:
        built["sections"] = selectors.storefront_listings(merchant=merchant)
        built["resale_listings"] = affiliate_selectors.store_resale_listings(merchant=merchant)
        return render_to_string("shop/_store_catalogue.html", {"merchant": merchant, **built})

    html = storefront_cache.cached(merchant_id=merchant.pk, name="store", build=catalogue)
    # ``built`` is empty when the catalogue came from the cache.
    return render(request, "shop/store.html", {"merchant": merchant, "catalogue": html, **built})


@dataclass(frozen=True)
class ProductPage:
    """A product page's parts that are the same for every buyer (cached on a GET): its listing's
    product, or the URL to redirect to when the slug is a variant's own."""

    product_id: int = 0
    title: str = ""
    head_html: str = ""
    fields_html: str = ""
    price_html: str = ""
    redirect: str = ""


def _load_listing(*, merchant: Merchant, product_slug: str) -> selectors.Listing | str | None:
    """The listing, the URL of its own page when ``product_slug`` is a variant's, or None."""
    listing = selectors.get_listing(merchant=merchant, slug=product_slug)
    if listing is None:
        return None
    if listing.product.slug != product_slug:
        # A variant's own slug: show its listing with that option picked.
        return reverse("shop:product", args=[merchant.slug, listing.product.slug])
    storefront_cache.remember_products(listing.options)
    return listing


def _buy_form(request: HttpRequest, listing: selectors.Listing) -> BuyForm:
    first = listing.options[0]
    gateways = [
        (gateway.name, gateway.label)
        for gateway in available_gateways(amount=first.price, currency=first.currency)
    ]
    return BuyForm(request.POST or None, listing=listing, gateways=gateways)


def _product_page(
    *, merchant: Merchant, listing: selectors.Listing, form: BuyForm, built: dict[str, Any]
) -> ProductPage:
    built["price_tiers"] = promotions_selectors.listing_price_tiers(options=listing.options)
    context = {"merchant": merchant, "listing": listing, "price_tiers": built["price_tiers"]}
    return ProductPage(
        product_id=listing.product.pk,
        title=listing.product.title,
        head_html=render_to_string("shop/_product_head.html", context),
        fields_html=render_to_string("shop/_buy_fields.html", {"form": form}),
        price_html=render_to_string("shop/_product_price.html", context),
    )


def _cached_product_page(
    request: HttpRequest, merchant: Merchant, product_slug: str
) -> HttpResponse:
    """A GET of a product page: its buyer-independent parts from the cache (shop/cache.py) when
    there, around this request's CSRF token, captcha and messages."""
    built: dict[str, Any] = {}

    def build() -> ProductPage | None:
        loaded = _load_listing(merchant=merchant, product_slug=product_slug)
        if loaded is None or isinstance(loaded, str):
            return ProductPage(redirect=loaded) if loaded else None
        built["listing"] = loaded
        built["form"] = _buy_form(request, loaded)
        return _product_page(merchant=merchant, listing=loaded, form=built["form"], built=built)

    page = storefront_cache.cached(
        merchant_id=merchant.pk, name=f"product:{product_slug}", build=build
    )
    if page is None:
        raise Http404
    if page.redirect:
        return redirect(page.redirect)
    # analytics funnel: one upsert per page view, fail-safe (never breaks the page)
    merchant_services.record_product_view(product_id=page.product_id, merchant_id=merchant.pk)
    response = render(
        request,
        "shop/product.html",
        {
            "merchant": merchant,
            "page": page,
            "captcha": captcha.current_challenge_id(request.session),
            "price_check": None,
            **built,  # empty when the page came from the cache
        },
    )
    return device.remember_device(request, response)


def captcha_answered(request: HttpRequest, form: forms.Form) -> bool:
    """Spend the pending captcha on this submission, answered right or not: True if answered
    right; a wrong or expired answer puts an error on ``form`` and issues a new challenge."""
    verdict = captcha.check_answer(request.session, request.POST.get("captcha_answer", ""))
    if verdict in (captcha.Verdict.WRONG, captcha.Verdict.EXPIRED):
        form.add_error(None, _("The answer to the security check was wrong. Try this one."))
        captcha.issue_challenge(request.session)
    return verdict is captcha.Verdict.PASSED


def place_checkout(
    request: HttpRequest,
    form: forms.Form,
    checkout: Callable[[], order_services.CheckoutResult],
) -> HttpResponse | None:
    """Run ``checkout`` for a valid buy form (a product's or a resale listing's): the redirect to
    payment, the device remembered; or None, the refusal on ``form`` (an input error on its field,
    or on ``manual_<field>``, else on the form; a captcha demand issues a challenge)."""
    try:
        result = checkout()
    except InvalidOrderInput as exc:
        for field, messages in exc.errors.items():
            target = field if field in form.fields else f"manual_{field}"
            for message in messages:
                form.add_error(target if target in form.fields else None, message)
    except CaptchaRequired as exc:
        form.add_error(None, exc.user_message)
        captcha.issue_challenge(request.session)
    except CardvaultError as exc:
        form.add_error(None, exc.user_message)
    else:
        return device.remember_device(request, redirect(result.redirect_url))
    return None


@rate_limit(group="checkout", rate_setting="RATE_LIMIT_CHECKOUT")
def product(request: HttpRequest, slug: str, product_slug: str) -> HttpResponse:
    merchant = selectors.get_active_merchant(slug=slug)
    if merchant is None:
        raise Http404
    if request.method == "GET":
        return _cached_product_page(request, merchant, product_slug)
    loaded = _load_listing(merchant=merchant, product_slug=product_slug)
    if loaded is None:
        raise Http404
    if isinstance(loaded, str):
        return redirect(loaded)
    listing = loaded
    form = _buy_form(request, listing)
    captcha_passed = False
    # promotions: "Check price" prices the form (tier, coupon) and places nothing.
    checking_price = request.method == "POST" and "check_price" in request.POST
    price_check = promotions_views.check_price(form) if checking_price else None
    if request.method == "POST" and not checking_price and form.is_valid():
        captcha_passed = captcha_answered(request, form)
    if request.method == "POST" and not checking_price and form.is_valid():
        placed = place_checkout(
            request,
            form,
            lambda: order_services.checkout(
                product=form.selected_product(),
                quantity=form.cleaned_data["quantity"],
                email=form.cleaned_data["email"],
                query_password=form.cleaned_data["query_password"],
                manual_inputs=form.manual_inputs(),
                gateway_name=form.cleaned_data["gateway"],
                base_url=request.build_absolute_uri("/"),
                buyer_ip=client_ip(request),
                user_agent=request.headers.get("User-Agent", ""),
                language=get_language() or "en",
                mobile=is_mobile(request),
                device_id=device.device_id(request),
                captcha_passed=captcha_passed,
                coupon_code=form.cleaned_data["coupon_code"],
                attach=affiliate_services.referral_attacher(
                    code=affiliate_selectors.referral_code(request),
                    buyer_id=request.user.pk if request.user.is_authenticated else None,
                ),
            ),
        )
        if placed is not None:
            return placed
    status = 400 if request.method == "POST" and price_check is None else 200
    built: dict[str, Any] = {"listing": listing, "form": form}
    response = render(
        request,
        "shop/product.html",
        {
            "merchant": merchant,
            "page": _product_page(merchant=merchant, listing=listing, form=form, built=built),
            "captcha": captcha.current_challenge_id(request.session),
            "price_check": price_check,
            **built,
        },
        status=status,
    )
    return device.remember_device(request, response)
