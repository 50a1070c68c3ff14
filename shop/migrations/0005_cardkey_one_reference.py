"""The stock table's references become one composite foreign key, and its indexes lose what
another index covers (issue 7: an import's commit checked three references a key, and every
index costs each imported row and each claim or sale).

- Card key (batch, product, merchant) → import batch (id, product, merchant), and import batch
  (product, merchant) → product (id, merchant): a key's merchant is its product's and its batch's
  (stronger than before), one check a key instead of three. Every key has a batch now (keys
  without one, from before imports were batched, get one per product here).
- Indexes dropped: merchant (the (merchant, fingerprint) constraint's index covers it), batch
  (cardkey_batch_status covers it), the second order index; cardkey_order leaves out free stock.
On SQLite (the demo) the composite keys are not added; the ORM's on_delete still protects.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def batch_orphan_keys(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # Check the update's references now: ALTER TABLE refuses to run with checks pending.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    CardKey = apps.get_model("shop", "CardKey")
    ImportBatch = apps.get_model("shop", "ImportBatch")
    orphans = CardKey.objects.filter(batch__isnull=True)
    for product_id, merchant_id in orphans.values_list("product_id", "merchant_id").distinct():
        batch = ImportBatch.objects.create(
            merchant_id=merchant_id,
            product_id=product_id,
            source="command",
            file_name="(before 0005)",
        )
        keys = orphans.filter(product_id=product_id, merchant_id=merchant_id)
        batch.line_count = batch.imported_count = keys.update(batch=batch)
        batch.save(update_fields=["line_count", "imported_count"])


COMPOSITE_KEYS = [
    (
        "shop_importbatch",
        "importbatch_product_merchant_fk",
        "(product_id, merchant_id) REFERENCES shop_product (id, merchant_id)",
    ),
    (
        "shop_cardkey",
        "cardkey_batch_product_merchant_fk",
        "(batch_id, product_id, merchant_id) REFERENCES shop_importbatch (id, product_id, merchant_id)",
    ),
]


def add_composite_keys(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, name, reference in COMPOSITE_KEYS:
        schema_editor.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY {reference}"
            " DEFERRABLE INITIALLY DEFERRED"
        )


def drop_composite_keys(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, name, _reference in reversed(COMPOSITE_KEYS):
        schema_editor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("merchants", "0004_crm_analytics"),
        ("orders", "0013_order_merchant_paid_index"),
        ("shop", "0004_product_low_stock_threshold"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(batch_orphan_keys, migrations.RunPython.noop),
        migrations.RemoveIndex(
            model_name="cardkey",
            name="cardkey_order",
        ),
        migrations.AlterField(
            model_name="cardkey",
            name="batch",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="card_keys",
                to="shop.importbatch",
                verbose_name="import batch",
            ),
        ),
        migrations.AlterField(
            model_name="cardkey",
            name="merchant",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                to="merchants.merchant",
                verbose_name="merchant",
            ),
        ),
        migrations.AlterField(
            model_name="cardkey",
            name="order",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="card_keys",
                to="orders.order",
                verbose_name="order",
            ),
        ),
        migrations.AlterField(
            model_name="cardkey",
            name="product",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="card_keys",
                to="shop.product",
                verbose_name="product",
            ),
        ),
        migrations.AddIndex(
            model_name="cardkey",
            index=models.Index(
                condition=models.Q(("order__isnull", False)), fields=["order"], name="cardkey_order"
            ),
        ),
        migrations.AddConstraint(
            model_name="importbatch",
            constraint=models.UniqueConstraint(
                fields=("id", "product", "merchant"), name="importbatch_id_product_merchant"
            ),
        ),
        migrations.AddConstraint(
            model_name="product",
            constraint=models.UniqueConstraint(
                fields=("id", "merchant"), name="product_id_merchant"
            ),
        ),
        migrations.RunPython(add_composite_keys, drop_composite_keys),
    ]
