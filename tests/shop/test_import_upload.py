"""Key files uploaded in the merchant centre's import page go through ``shop.uploads``: a size
limit of their own (``KEY_IMPORT_MAX_BYTES``), UTF-8 text by content, and nothing imported when
the file is refused."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import translation

from shop.admin_forms import ImportKeysForm
from shop.models import CardKey, ImportBatch
from tests.factories import MerchantFactory, ProductFactory, UserFactory


@pytest.fixture
def store(db):
    owner = UserFactory(username="keeper")
    merchant = MerchantFactory(owner=owner)
    product = ProductFactory(merchant=merchant)
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(owner)
    return client, product


def import_url(product) -> str:
    return f"/merchant/shop/product/{product.pk}/import/"


def post_file(client, product, content: bytes, name: str = "keys.txt"):
    upload = SimpleUploadedFile(name, content, content_type="text/plain")
    return client.post(import_url(product), {"file": upload})


def file_errors(response) -> list[str]:
    return [str(message) for message in response.context["form"].errors.get("file", [])]


def test_a_file_within_the_limit_is_imported(store, settings):
    client, product = store
    content = b"KEY-1\nKEY-2\nKEY-3\n"
    settings.KEY_IMPORT_MAX_BYTES = len(content)

    response = post_file(client, product, content)

    assert response.status_code == 302
    assert CardKey.objects.filter(product=product).count() == 3


def test_a_file_over_the_limit_is_refused_and_nothing_imported(store, settings):
    client, product = store
    content = b"KEY-1\nKEY-2\nKEY-3\n"
    settings.KEY_IMPORT_MAX_BYTES = len(content) - 1
    settings.UPLOAD_MAX_BYTES = 10 * len(content)  # the key files' own limit applies

    response = post_file(client, product, content)

    assert response.status_code == 200
    [error] = file_errors(response)
    assert "too large" in error
    # Only the file's error: not also "choose a file", which the merchant did.
    assert not response.context["form"].non_field_errors()
    assert not ImportBatch.objects.exists()
    assert not CardKey.objects.exists()


def test_the_key_limit_is_separate_from_the_general_upload_limit(store, settings):
    client, product = store
    content = b"".join(b"KEY-%05d\n" % n for n in range(200))
    settings.UPLOAD_MAX_BYTES = 100  # far below: key files do not use the general limit
    settings.KEY_IMPORT_MAX_BYTES = len(content)

    response = post_file(client, product, content, name="keys.csv")

    assert response.status_code == 302
    assert CardKey.objects.filter(product=product).count() == 200


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 20,  # an image named .txt
        b"<!DOCTYPE html><script>alert(1)</script>\n",  # markup a browser would render
        b"K\xff\xfeY\n",  # not UTF-8
        b"K-1\x00K-2\n",  # binary
    ],
)
def test_a_file_that_is_not_utf8_text_is_refused(store, content):
    client, product = store

    response = post_file(client, product, content)

    assert response.status_code == 200
    [error] = file_errors(response)
    assert "not UTF-8 text" in error
    assert not ImportBatch.objects.exists()


def test_an_empty_file_is_refused(store):
    client, product = store

    response = post_file(client, product, b"")

    assert response.status_code == 200
    assert file_errors(response)
    assert not ImportBatch.objects.exists()


def test_default_limit_holds_a_hundred_thousand_keys(settings):
    # 100,000 keys of 200 characters with CRLF line ends.
    assert settings.KEY_IMPORT_MAX_BYTES == 20 * 1024 * 1024
    assert settings.KEY_IMPORT_MAX_BYTES >= 100_000 * 202
    with translation.override("en"):
        form = ImportKeysForm()
    assert "20.0 MB" in str(form.fields["file"].help_text)
