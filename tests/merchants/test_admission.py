"""Merchant admission: the public application at /apply/, staff approve or reject in /admin/,
the applicant is e-mailed either way, and documents stay private to staff."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from merchants import services
from merchants.exceptions import ApplicationAlreadyDecided, ApplicationDecisionRefused
from merchants.models import ApplicationDocument, Merchant, MerchantApplication, MerchantMembership
from orders.models import Order
from tests.conftest import place
from tests.factories import MerchantFactory, ProductFactory, add_keys

pytestmark = pytest.mark.django_db

PASSWORD = "a-Long-password-4-tests"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def form_data(**overrides):
    data = {
        "username": "newshop",
        "email": "owner@newshop.example",
        "password1": PASSWORD,
        "password2": PASSWORD,
        "store_name": "New Shop",
        "slug": "new-shop",
        "contact": "telegram @newshop",
        "goods": "Steam gift cards",
        "documents": [
            SimpleUploadedFile("licence.png", PNG, content_type="image/png"),
            SimpleUploadedFile("id.pdf", PDF, content_type="application/pdf"),
        ],
    }
    data.update(overrides)
    return data


def apply(client: Client | None = None, language: str = "en", **overrides):
    client = client or Client(HTTP_ACCEPT_LANGUAGE=language)
    return client.post("/apply/", form_data(**overrides))


def decide_url(application: MerchantApplication) -> str:
    return f"/admin/merchants/merchantapplication/{application.pk}/decide/"


def merchant_login(username: str = "newshop", password: str = PASSWORD):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    response = client.post(
        "/merchant/login/", {"username": username, "password": password, "next": "/merchant/"}
    )
    return client, response


def test_home_page_links_to_the_application_form(client):
    response = client.get("/")
    assert 'href="/apply/"' in response.content.decode()
    assert client.get("/apply/").status_code == 200


def test_application_creates_an_inactive_user_and_no_merchant(_media):
    response = apply(language="zh-hans")

    assert response.status_code == 302
    assert response["Location"] == "/apply/done/"
    application = MerchantApplication.objects.get()
    assert (application.store_name, application.slug, application.status) == (
        "New Shop",
        "new-shop",
        MerchantApplication.Status.SUBMITTED,
    )
    assert application.language == "zh-hans"
    assert application.user.is_active is False
    assert application.user.check_password(PASSWORD)
    assert Merchant.objects.count() == 0
    documents = list(application.documents.order_by("id"))
    assert [(d.kind, d.original_name, d.size) for d in documents] == [
        ("png", "licence.png", len(PNG)),
        ("pdf", "id.pdf", len(PDF)),
    ]
    for document in documents:
        # Random names under the private folder; the upload's own name is not used.
        assert document.file.name.startswith("private/merchant-applications/")
        assert "licence" not in document.file.name and "id.pdf" not in document.file.name
    assert (_media / documents[0].file.name).read_bytes() == PNG
    # Not approved yet: no way into the merchant centre.
    _client, login = merchant_login()
    assert login.status_code == 200


def test_staff_approval_opens_the_store_and_emails_the_applicant(
    staff_client, staff_user, django_capture_on_commit_callbacks
):
    apply(language="zh-hans")
    application = MerchantApplication.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(decide_url(application), {"decision": "approve"})

    assert response.status_code == 302
    application.refresh_from_db()
    merchant = Merchant.objects.get(slug="new-shop")
    assert application.status == MerchantApplication.Status.APPROVED
    assert application.merchant == merchant
    assert application.decided_by == staff_user
    assert (merchant.name, merchant.status, merchant.contact) == (
        "New Shop",
        Merchant.Status.ACTIVE,
        "telegram @newshop",
    )
    membership = MerchantMembership.objects.get(user=application.user)
    assert (membership.merchant, membership.role) == (merchant, MerchantMembership.Role.OWNER)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["owner@newshop.example"]
    assert "New Shop" in mail.outbox[0].subject
    assert "/merchant/" in mail.outbox[0].body

    # The new merchant signs in to the merchant centre and sells.
    client, login = merchant_login()
    assert login.status_code == 302
    assert client.get("/merchant/").status_code == 200
    product = ProductFactory(merchant=merchant)
    add_keys(product, 1)
    placed = place(product)
    assert placed.order.status == Order.Status.PENDING
    assert Client().get(f"/s/{merchant.slug}/").status_code == 200


def test_decision_email_is_sent_once(staff_user, django_capture_on_commit_callbacks):
    apply()
    application = MerchantApplication.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_application(application_id=application.pk, actor=staff_user)
    from merchants import notifications

    assert notifications.send_application_decision(application_id=application.pk) is False
    assert len(mail.outbox) == 1


def test_rejection_emails_the_reason_and_opens_nothing(
    staff_client, django_capture_on_commit_callbacks
):
    apply()
    application = MerchantApplication.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            decide_url(application),
            {"decision": "reject", "reason": "We could not verify the business licence."},
        )

    assert response.status_code == 302
    application.refresh_from_db()
    assert application.status == MerchantApplication.Status.REJECTED
    assert application.reason == "We could not verify the business licence."
    assert Merchant.objects.count() == 0
    assert MerchantMembership.objects.count() == 0
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["owner@newshop.example"]
    assert "We could not verify the business licence." in mail.outbox[0].body
    _client, login = merchant_login()
    assert login.status_code == 200  # the login form again: no access


def test_rejection_needs_a_reason(staff_client, staff_user):
    apply()
    application = MerchantApplication.objects.get()

    response = staff_client.post(decide_url(application), {"decision": "reject", "reason": " "})

    assert response.status_code == 200
    assert "Give the applicant a reason" in response.content.decode()
    application.refresh_from_db()
    assert application.status == MerchantApplication.Status.SUBMITTED
    with pytest.raises(ApplicationDecisionRefused):
        services.reject_application(application_id=application.pk, actor=staff_user, reason="")
    assert len(mail.outbox) == 0


def test_a_decided_application_cannot_be_decided_again(staff_user):
    apply()
    application = MerchantApplication.objects.get()
    services.reject_application(application_id=application.pk, actor=staff_user, reason="No.")

    with pytest.raises(ApplicationAlreadyDecided):
        services.approve_application(application_id=application.pk, actor=staff_user)
    assert Merchant.objects.count() == 0


def test_approval_refused_when_staff_gave_the_address_away_meanwhile(staff_user):
    apply()
    application = MerchantApplication.objects.get()
    MerchantFactory(slug="new-shop")

    with pytest.raises(ApplicationDecisionRefused):
        services.approve_application(application_id=application.pk, actor=staff_user)
    application.refresh_from_db()
    assert application.status == MerchantApplication.Status.SUBMITTED
    assert application.user.is_active is False


def test_taken_username_and_store_address_are_refused():
    MerchantFactory(slug="new-shop")
    get_user_model().objects.create_user("NewShop", "x@example.com", "pw")

    response = apply()

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert errors["slug"] == ["This store address is taken."]
    assert errors["username"] == ["This username is taken."]
    assert MerchantApplication.objects.count() == 0


def test_an_open_application_reserves_its_store_address():
    apply()
    response = apply(username="other", email="other@example.com")
    assert response.status_code == 400
    assert response.context["form"].errors["slug"] == ["This store address is taken."]


# --- documents --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("passport.png", b"just some text pretending to be an image"),
        ("licence.pdf", b"<html><script>alert(1)</script></html>"),
        ("photo.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00"),
    ],
)
def test_documents_must_be_png_jpeg_or_pdf_by_content(_media, name, content):
    response = apply(documents=[SimpleUploadedFile(name, content, content_type="image/png")])

    assert response.status_code == 400
    assert "documents" in response.context["form"].errors
    assert MerchantApplication.objects.count() == 0
    assert get_user_model().objects.count() == 0
    assert not any(Path(_media).rglob("*.*"))


def test_oversized_documents_are_refused(settings, _media):
    settings.MERCHANT_DOCUMENT_MAX_BYTES = 1024
    big = PNG + b"\x00" * 1024

    response = apply(documents=[SimpleUploadedFile("big.png", big, content_type="image/png")])

    assert response.status_code == 400
    assert "too large" in " ".join(response.context["form"].errors["documents"])
    assert MerchantApplication.objects.count() == 0
    assert not any(Path(_media).rglob("*.*"))


def test_a_document_is_required():
    response = apply(documents=[])
    assert response.status_code == 400
    assert "documents" in response.context["form"].errors


def test_documents_are_not_public_but_staff_can_download_them(staff_client):
    apply()
    application = MerchantApplication.objects.get()
    document = ApplicationDocument.objects.get(application=application, kind="png")
    url = f"/admin/merchants/merchantapplication/{application.pk}/documents/{document.pk}/"

    # No public URL serves the media folder.
    assert Client().get(f"/media/{document.file.name}").status_code == 404
    assert Client().get(f"/{document.file.name}").status_code == 404
    # Anonymous visitors and merchants are sent to the staff login.
    anonymous = Client().get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/admin/login/")
    merchant = MerchantFactory()
    merchant_client = Client()
    merchant_client.force_login(merchant.owner)
    assert merchant_client.get(url).status_code == 302

    response = staff_client.get(url)

    assert response.status_code == 200
    assert response.content == PNG
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("attachment;")
    # The application page lists the download.
    page = staff_client.get(f"/admin/merchants/merchantapplication/{application.pk}/change/")
    assert url in page.content.decode()


def test_a_document_of_another_application_is_not_served_under_this_one(staff_client):
    apply()
    apply(username="second", email="s@example.com", slug="second-shop")
    first, second = MerchantApplication.objects.order_by("id")
    document = second.documents.first()
    url = f"/admin/merchants/merchantapplication/{first.pk}/documents/{document.pk}/"
    assert staff_client.get(url).status_code == 404
