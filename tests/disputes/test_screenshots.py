"""Screenshots: images only (checked by content), size-limited, stored under a random name in a
private folder no URL serves, and streamed only to the buyer (by token), the merchant's users and
staff."""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from disputes import evidence, services
from disputes.exceptions import InvalidDisputeInput
from disputes.models import Dispute
from tests.disputes.factories import delivered_order, gif_bytes, png_bytes, staff_client_for
from tests.factories import MerchantFactory, ProductFactory, UserFactory, add_keys

pytestmark = pytest.mark.django_db

EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


def upload(content: bytes, name: str = "shot.png", content_type: str = "image/png"):
    return SimpleUploadedFile(name, content, content_type=content_type)


def open_with(delivered, screenshot, client=None):
    return (client or Client(**EN)).post(
        reverse("disputes:start", args=[delivered.token]),
        {"reason": "key_invalid", "message": "See the screenshot.", "screenshot": screenshot},
    )


def stored_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_a_png_is_stored_privately_under_a_random_name(delivered, settings):
    response = open_with(delivered, upload(png_bytes(), name="../../evil name.png"))

    assert response.status_code == 302
    dispute = Dispute.objects.get()
    name = dispute.screenshot.name
    assert name.startswith("private/disputes/")
    assert name.endswith(".png")
    assert "evil" not in name
    assert dispute.screenshot_content_type == "image/png"
    files = stored_files(settings)
    assert files == [Path(settings.MEDIA_ROOT) / name]
    assert files[0].read_bytes() == png_bytes()


def test_the_type_comes_from_the_content_not_the_name(delivered):
    # A GIF uploaded as "photo.png" with a PNG content type is stored and served as a GIF.
    assert open_with(delivered, upload(gif_bytes(), name="photo.png")).status_code == 302
    dispute = Dispute.objects.get()
    assert dispute.screenshot_content_type == "image/gif"
    assert dispute.screenshot.name.endswith(".gif")


@pytest.mark.parametrize(
    "content",
    [
        b"<html><script>alert(1)</script></html>",
        b"%PDF-1.7\n...",
        b"\x89PNG\r\n\x1a\n<script>not really a png</script>",
        b"GIF89a\x00\x00\x00\x00",
        b"RIFF\x00\x00\x00\x00WEBPjunk",
    ],
    ids=["html", "pdf", "png-signature-only", "gif-zero-size", "webp-no-chunk"],
)
def test_a_non_image_is_rejected_and_nothing_is_stored(delivered, settings, content):
    response = open_with(delivered, upload(content))

    assert response.status_code == 400
    assert "Attach an image (PNG, JPEG, WebP or GIF)." in response.content.decode()
    assert not Dispute.objects.exists()
    assert stored_files(settings) == []


def test_an_oversize_screenshot_is_rejected(delivered, settings):
    settings.DISPUTE_SCREENSHOT_MAX_BYTES = 100
    big = png_bytes(width=200, height=200)
    assert len(big) > 100

    response = open_with(delivered, upload(big))

    assert response.status_code == 400
    assert "too large" in response.content.decode()
    assert not Dispute.objects.exists()
    assert stored_files(settings) == []


def test_a_screenshot_over_every_upload_limit_is_refused_with_the_same_message(delivered, settings):
    """Past the largest upload limit the file is dropped while it arrives
    (``shop.uploads.UploadCapHandler``, tests/shop/test_upload_cap.py); an anonymous buyer still
    gets the form's message, and nothing is stored."""
    for name in ("UPLOAD_MAX_BYTES", "KEY_IMPORT_MAX_BYTES", "MERCHANT_DOCUMENT_MAX_BYTES"):
        setattr(settings, name, 1024)
    settings.DISPUTE_SCREENSHOT_MAX_BYTES = 1024
    big = png_bytes(width=400, height=400) + b"\x00" * 100_000

    response = open_with(delivered, upload(big))

    assert response.status_code == 400
    assert "too large" in response.content.decode()
    assert not Dispute.objects.exists()
    assert stored_files(settings) == []


def test_the_default_limit_is_two_megabytes(settings):
    assert settings.DISPUTE_SCREENSHOT_MAX_BYTES == 2 * 1024 * 1024


def test_a_refused_dispute_leaves_no_file(delivered, settings):
    services.open_dispute(order_id=delivered.order.pk, reason="other", message="first")
    with pytest.raises(Exception):  # noqa: B017 - DisputeAlreadyOpen, checked by its effect
        services.open_dispute(
            order_id=delivered.order.pk,
            reason="other",
            message="second",
            screenshot=upload(png_bytes()),
        )
    assert stored_files(settings) == []


def test_magic_byte_check_without_pillow():
    assert evidence._inspect_magic(png_bytes()[:64]) == evidence.PNG
    assert evidence._inspect_magic(gif_bytes()[:64]) == evidence.GIF
    assert evidence._inspect_magic(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00") == evidence.JPEG
    assert evidence._inspect_magic(b"RIFF\x10\x00\x00\x00WEBPVP8 \x00\x00") == evidence.WEBP
    assert evidence._inspect_magic(b"\xff\xd8\x00\x00") is None
    assert evidence._inspect_magic(b"hello") is None


def test_service_reports_the_screenshot_field(delivered):
    with pytest.raises(InvalidDisputeInput) as info:
        services.open_dispute(
            order_id=delivered.order.pk,
            reason="other",
            message="m",
            screenshot=upload(b"not an image"),
        )
    assert list(info.value.errors) == ["screenshot"]


# --- who can see it ----------------------------------------------------------------------------
@pytest.fixture
def with_screenshot(delivered):
    open_with(delivered, upload(png_bytes()))
    return delivered, Dispute.objects.get()


def test_the_stored_file_has_no_public_url(with_screenshot, settings):
    _delivered, dispute = with_screenshot
    name = dispute.screenshot.name
    client = Client()
    for url in (f"/media/{name}", f"/{name}", f"/static/{name}", f"{settings.MEDIA_URL}{name}"):
        assert client.get(url).status_code == 404, url


def test_the_buyer_sees_it_by_token(with_screenshot):
    delivered, dispute = with_screenshot
    response = Client().get(reverse("disputes:screenshot", args=[delivered.token, dispute.pk]))

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == png_bytes()
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert "no-store" in response["Cache-Control"]


def test_another_orders_token_does_not_open_it(with_screenshot, shop):
    _delivered, dispute = with_screenshot
    _merchant, product, _keys = shop
    other = delivered_order(product, email="other@example.com")
    for token in (other.token, "0" * 64):
        url = reverse("disputes:screenshot", args=[token, dispute.pk])
        assert Client().get(url).status_code == 404


def test_the_merchant_and_staff_see_it_other_merchants_and_anonymous_do_not(
    with_screenshot, shop, staff
):
    _delivered, dispute = with_screenshot
    merchant, _product, _keys = shop
    path = f"disputes/dispute/{dispute.pk}/screenshot/"

    owner = Client()
    owner.force_login(merchant.owner)
    assert owner.get(f"/merchant/{path}").status_code == 200

    stranger_shop = MerchantFactory()
    add_keys(ProductFactory(merchant=stranger_shop), 1)
    stranger = Client()
    stranger.force_login(stranger_shop.owner)
    assert stranger.get(f"/merchant/{path}").status_code == 404

    admin = staff_client_for(staff)
    assert admin.get(f"/admin/{path}").status_code == 200

    anonymous = Client()
    for prefix in ("/merchant/", "/admin/"):
        response = anonymous.get(f"{prefix}{path}")
        assert response.status_code == 302
        assert "/login/" in response["Location"]

    # A merchant user is not staff: the staff site refuses it.
    merchant_on_admin = owner.get(f"/admin/{path}")
    assert merchant_on_admin.status_code == 302
    plain = Client()
    plain.force_login(UserFactory())
    assert plain.get(f"/merchant/{path}").status_code == 302
