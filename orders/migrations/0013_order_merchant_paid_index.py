from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0012_order_pricing"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="order",
            index=models.Index(
                condition=models.Q(("paid_at__isnull", False)),
                fields=["merchant", "paid_at"],
                name="order_merchant_paid",
            ),
        ),
    ]
