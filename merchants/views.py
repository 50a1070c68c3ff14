"""Public pages of merchant admission: the application form and its confirmation."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import get_language

from merchants import services
from merchants.exceptions import InvalidApplication
from merchants.forms import ApplicationForm, application_field_errors
from security.ratelimit import rate_limit


@rate_limit(group="merchant-apply", rate_setting="RATE_LIMIT_MERCHANT_APPLY")
def apply(request: HttpRequest) -> HttpResponse:
    form = ApplicationForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.submit_application(
                username=data["username"],
                email=data["email"],
                password=data["password1"],
                store_name=data["store_name"],
                slug=data["slug"],
                contact=data["contact"],
                goods=data["goods"],
                documents=data["documents"],
                language=get_language() or "en",
            )
        except InvalidApplication as exc:
            application_field_errors(form, exc.errors)
        else:
            return redirect(reverse("merchants:apply_done"))
    status = 400 if request.method == "POST" else 200
    return render(request, "merchants/apply.html", {"form": form}, status=status)


def apply_done(request: HttpRequest) -> HttpResponse:
    return render(request, "merchants/apply_done.html")
