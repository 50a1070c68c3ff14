import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from shop import selectors, services
from shop.exceptions import ImportRejected
from shop.models import CardKey, ImportBatch, Product
from tests.factories import ProductFactory, add_keys


def _import(product, text, **kwargs):
    return services.import_keys(
        product=product,
        lines=services.read_key_lines(text, file_name=kwargs.pop("file_name", "")),
        source=ImportBatch.Source.PASTE,
        **kwargs,
    )


def test_blank_lines_skipped_whitespace_trimmed_duplicates_counted(product):
    text = "  AAA-1  \n\nBBB-2\nAAA-1\n\t\nCCC-3\nBBB-2\n"

    result = _import(product, text)

    assert (result.imported, result.duplicates, result.rejected) == (3, 2, 0)
    batch = ImportBatch.objects.get(pk=result.batch.pk)
    assert (batch.imported_count, batch.duplicate_count, batch.rejected_count) == (3, 2, 0)
    assert batch.line_count == 7
    assert CardKey.objects.filter(product=product, batch=batch).count() == 3


def test_duplicates_against_existing_stock_of_any_product_of_the_merchant(product):
    other = ProductFactory(merchant=product.merchant)
    _import(other, "SHARED-1\nOTHER-2\n")

    result = _import(product, "SHARED-1\nNEW-3\n")

    assert (result.imported, result.duplicates) == (1, 1)
    assert CardKey.objects.filter(merchant=product.merchant).count() == 3


def test_same_key_at_another_merchant_is_not_a_duplicate(product):
    stranger = ProductFactory()
    _import(stranger, "SAME-KEY\n")

    result = _import(product, "SAME-KEY\n")

    assert result.imported == 1


def test_over_long_lines_rejected_with_line_numbers(product, settings):
    settings.CARD_KEY_MAX_LENGTH = 10
    text = "OK-1\n" + "X" * 11 + "\nOK-2\n\n" + "Y" * 50 + "\n"

    result = _import(product, text)

    assert (result.imported, result.duplicates, result.rejected) == (2, 0, 2)
    assert result.rejected_lines == [2, 5]
    assert ImportBatch.objects.get().rejected_lines == [2, 5]


def test_csv_takes_the_first_column_and_keeps_quoted_commas(product):
    text = 'key,note\n"user,pass",x\nPLAIN-1,y\n'

    result = _import(product, text, file_name="keys.csv")

    assert result.imported == 3  # the header row is a line like any other


def test_binary_or_non_utf8_file_is_refused_and_writes_nothing(product):
    with pytest.raises(ImportRejected):
        services.read_key_lines(b"\xff\xfe\x00bad", file_name="keys.txt")
    assert ImportBatch.objects.count() == 0


def test_manual_product_cannot_hold_stock(product):
    product.delivery_mode = Product.DeliveryMode.MANUAL
    product.save()

    with pytest.raises(ImportRejected):
        _import(product, "KEY-1\n")
    assert CardKey.objects.count() == 0


def test_batch_remembers_who_and_what(product, django_user_model):
    user = django_user_model.objects.create_user("importer")

    result = services.import_keys(
        product=product,
        lines=["K-1", "K-2"],
        source=ImportBatch.Source.UPLOAD,
        file_name="march.txt",
        created_by=user,
    )

    batch = result.batch
    assert (batch.created_by, batch.file_name, batch.source) == (user, "march.txt", "upload")
    assert set(CardKey.objects.values_list("batch_id", flat=True)) == {batch.pk}


def test_hundred_thousand_keys_import_in_one_batch(product):
    lines = [f"BULK-{i:07d}" for i in range(100_000)]

    result = services.import_keys(product=product, lines=lines, source=ImportBatch.Source.COMMAND)

    assert (result.imported, result.duplicates, result.rejected) == (100_000, 0, 0)
    assert CardKey.objects.filter(product=product).count() == 100_000


def test_import_command_by_merchant_and_product_slug(product, tmp_path, capsys):
    path = tmp_path / "keys.txt"
    path.write_text("CMD-1\nCMD-2\nCMD-1\n" + "Z" * 2000 + "\n")

    call_command("import_keys", f"{product.merchant.slug}/{product.slug}", str(path))

    out = capsys.readouterr().out
    assert "imported 2, duplicate 1, rejected 1" in out
    assert "lines: 4" in out
    assert ImportBatch.objects.get().source == ImportBatch.Source.COMMAND


def test_import_command_unknown_product_is_a_clear_error(db, tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text("K\n")

    with pytest.raises(CommandError, match="No product 'nope'"):
        call_command("import_keys", "nope", str(path))


def test_void_only_touches_free_keys_of_that_merchant(product):
    from tests.conftest import place

    add_keys(product, 3)
    stranger = ProductFactory()
    add_keys(stranger, 1)
    placed = place(product, quantity=1)
    ids = list(CardKey.objects.values_list("id", flat=True))

    voided = services.void_keys(merchant_id=product.merchant_id, key_ids=ids)

    assert voided == 2
    assert CardKey.objects.get(order=placed.order).status == CardKey.Status.RESERVED
    assert CardKey.objects.get(product=stranger).status == CardKey.Status.AVAILABLE


def _plaintexts(batch) -> list[str]:
    """The batch's keys, decrypted, in id order (the merchant's export does it)."""
    exported = selectors.export_unsold_keys(merchant=batch.merchant, batch=batch)
    return [text for _pk, text in exported]


def test_reimport_with_held_keys_stores_only_the_new_ones_in_input_order(product):
    """The COPY meets the (merchant, fingerprint) constraint, rolls back to its savepoint and
    copies again only the keys the merchant does not hold, from the rows it already sealed."""
    _import(product, "B-2\nD-4\n")

    result = _import(product, "A-1\nB-2\nC-3\nD-4\nE-5\nA-1\n")

    assert (result.imported, result.duplicates) == (3, 3)
    batch = ImportBatch.objects.get(pk=result.batch.pk)
    assert (batch.imported_count, batch.duplicate_count) == (3, 3)
    assert _plaintexts(batch) == ["A-1", "C-3", "E-5"]
    assert CardKey.objects.filter(product=product).count() == 5


def test_a_key_whose_merchant_is_not_its_products_is_refused_by_the_database(product):
    """One composite foreign key (batch, product, merchant) stands for the three references."""
    result = _import(product, "MINE-1\n")
    key = CardKey.objects.get(batch=result.batch)
    stranger = ProductFactory()
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for change in (
        {"merchant_id": stranger.merchant_id},
        {"product_id": stranger.pk},
        {"batch_id": _import(stranger, "THEIRS-1\n").batch.pk},
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            CardKey.objects.filter(pk=key.pk).update(**change)
    with pytest.raises(IntegrityError), transaction.atomic():
        ImportBatch.objects.filter(pk=result.batch.pk).update(merchant_id=stranger.merchant_id)


def test_a_held_key_early_in_a_long_file_keeps_every_later_line(product):
    """The constraint may stop the COPY long before the end of the file: the lines it did not
    reach are still read, sealed and stored."""
    _import(product, "KEY-00003\n")
    lines = [f"KEY-{i:05d}" for i in range(20_000)]

    result = services.import_keys(product=product, lines=lines, source=ImportBatch.Source.COMMAND)

    assert (result.imported, result.duplicates) == (19_999, 1)
    assert result.batch.line_count == 20_000
    texts = _plaintexts(result.batch)
    assert len(texts) == 19_999
    assert (texts[0], texts[-1]) == ("KEY-00000", "KEY-19999")
