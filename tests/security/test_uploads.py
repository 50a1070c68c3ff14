"""shop.uploads: kinds proven by content, size limits, and serving that never yields HTML."""

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from shop import uploads

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG_BYTES = b"\xff\xd8\xff\xe0" + b"\x00" * 32


def upload(content: bytes, name: str = "file.png", content_type: str = "image/png"):
    return SimpleUploadedFile(name, content, content_type=content_type)


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (PNG_BYTES, uploads.PNG),
        (JPEG_BYTES, uploads.JPEG),
        (b"GIF89a" + b"\x00" * 10, uploads.GIF),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", uploads.WEBP),
    ],
)
def test_images_are_recognised_by_content(content, kind):
    assert uploads.validate_upload(upload(content, name="whatever.exe")) == kind


@pytest.mark.parametrize(
    "content",
    [
        b"<html><script>alert(1)</script></html>",
        b"  <!DOCTYPE html><p>hi",
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
        b"MZ\x90\x00\x03\x00",  # a Windows executable named .png
    ],
)
def test_html_svg_and_binaries_named_png_are_refused(content):
    with pytest.raises(ValidationError) as caught:
        uploads.validate_upload(upload(content), allowed=(*uploads.IMAGES, uploads.TEXT))
    assert caught.value.code == "bad_type"


def test_text_only_when_allowed_and_html_text_never():
    text = upload(b"KEY-1\nKEY-2\n", name="keys.txt", content_type="text/plain")
    with pytest.raises(ValidationError):
        uploads.validate_upload(text)
    assert uploads.validate_upload(text, allowed=(uploads.TEXT,)) == uploads.TEXT


def test_size_limit_and_empty_files(settings):
    settings.UPLOAD_MAX_BYTES = 40
    with pytest.raises(ValidationError) as too_big:
        uploads.validate_upload(upload(PNG_BYTES + b"\x00" * 10))
    assert too_big.value.code == "too_large"
    with pytest.raises(ValidationError) as empty:
        uploads.validate_upload(upload(b""))
    assert empty.value.code == "empty"
    assert uploads.validate_upload(upload(PNG_BYTES), max_bytes=1000) == uploads.PNG


def test_served_image_is_inline_with_its_validated_type_and_nosniff():
    response = uploads.upload_response(PNG_BYTES, kind=uploads.PNG, file_name="shot<script>.html")
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == 'inline; filename="shotscript.html.png"'
    assert "sandbox" in response["Content-Security-Policy"]


def test_served_non_image_is_an_attachment():
    response = uploads.upload_response(b"%PDF-1.4", kind=uploads.PDF, file_name="proof.pdf")
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="proof.pdf"'
    text = uploads.upload_response(b"a", kind=uploads.TEXT, file_name="")
    assert text["Content-Disposition"] == 'attachment; filename="file.txt"'
    assert text["Content-Type"] == "text/plain; charset=utf-8"
