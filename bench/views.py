"""The storefront floor: what any Django page costs here — the same middleware, one indexed
query, one small template — with none of Cardvault's work."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from merchants.models import Merchant


def bare_store(request: HttpRequest, slug: str) -> HttpResponse:
    merchant = Merchant.objects.filter(slug=slug).only("name", "slug").first()  # unique index
    if merchant is None:
        raise Http404
    return render(request, "bench/bare.html", {"merchant": merchant})
