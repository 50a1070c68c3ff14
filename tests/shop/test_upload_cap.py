"""No more of an uploaded file is kept than the largest upload limit allows
(``shop.uploads.UploadCapHandler``): the rest is read and dropped, and the form refuses the
stand-in with its own "too large" message. Requests go through Django's real multipart parser
and handler chain (``FILE_UPLOAD_HANDLERS``)."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler, load_handler
from django.http.multipartparser import MultiPartParser
from django.test import Client, RequestFactory
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from shop import uploads
from shop.models import CardKey, ImportBatch
from tests.factories import MerchantFactory, ProductFactory, UserFactory

LIMIT = 4096


@pytest.fixture
def small_limits(settings):
    """Also used by tests/disputes/test_screenshots.py."""
    settings.UPLOAD_MAX_BYTES = 1024
    settings.KEY_IMPORT_MAX_BYTES = LIMIT
    settings.MERCHANT_DOCUMENT_MAX_BYTES = 1024
    settings.DISPUTE_SCREENSHOT_MAX_BYTES = 1024
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 512  # bigger files go to temporary files


def _parse(content: bytes):
    """Parse one multipart file field the way a request does; returns the parsed file and the
    handlers (the temporary-file one holds what was written to disk)."""
    body = encode_multipart(BOUNDARY, {"file": SimpleUploadedFile("big.txt", content)})
    request = RequestFactory().generic("POST", "/", data=body, content_type=MULTIPART_CONTENT)
    handlers = [
        load_handler(path, request)
        for path in (
            "shop.uploads.UploadCapHandler",
            "django.core.files.uploadhandler.MemoryFileUploadHandler",
            "django.core.files.uploadhandler.TemporaryFileUploadHandler",
        )
    ]
    parser = MultiPartParser(request.META, io.BytesIO(body), handlers, "utf-8")
    _post, files = parser.parse()
    return files["file"], handlers


def test_a_file_over_every_limit_is_not_kept_beyond_the_largest(small_limits):
    upload, handlers = _parse(b"x" * (LIMIT * 50))

    assert isinstance(upload, uploads.OversizeUpload)
    assert upload.size == LIMIT * 50
    assert upload.read() == b""
    temporary = handlers[2]
    assert isinstance(temporary, TemporaryFileUploadHandler)
    assert temporary.file.tell() <= LIMIT  # what reached the disk
    with pytest.raises(Exception, match="too large"):
        uploads.validate_upload(upload, allowed=(uploads.TEXT,), max_bytes=LIMIT)


def test_a_file_within_the_largest_limit_passes_untouched(small_limits):
    content = b"KEY\n" * (LIMIT // 4)

    upload, _handlers = _parse(content)

    assert isinstance(upload, TemporaryUploadedFile)
    assert upload.read() == content


def test_the_settings_put_the_cap_first():
    from django.conf import settings

    assert settings.FILE_UPLOAD_HANDLERS[0] == "shop.uploads.UploadCapHandler"
    assert settings.DATA_UPLOAD_MAX_NUMBER_FILES <= 10


@pytest.mark.django_db
def test_a_key_file_over_the_cap_gets_the_forms_message_and_imports_nothing(small_limits):
    owner = UserFactory()
    product = ProductFactory(merchant=MerchantFactory(owner=owner))
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(owner)

    response = client.post(
        f"/merchant/shop/product/{product.pk}/import/",
        {"file": SimpleUploadedFile("keys.txt", b"KEY-1\n" * LIMIT, content_type="text/plain")},
    )

    assert response.status_code == 200
    [error] = response.context["form"].errors["file"]
    assert "too large" in str(error)
    assert not ImportBatch.objects.exists()
    assert not CardKey.objects.exists()
