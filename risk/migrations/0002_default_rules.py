"""Default rules, so a fresh platform is protected from the start (staff tune them in /admin/):
a captcha for bursts of checkouts, a block for a flood or for stock-locking (too many unpaid
orders), and a hold on unusually large payments."""

from decimal import Decimal

from django.db import migrations

DEFAULT_RULES = [
    # kind, stage, threshold, window minutes, currency, outcome, note
    ("velocity_ip", "create", "10", 10, "", "captcha", "bursts from one address"),
    ("velocity_email", "create", "5", 10, "", "captcha", "bursts for one mailbox"),
    ("velocity_device", "create", "8", 10, "", "captcha", "bursts from one browser"),
    ("velocity_ip", "create", "40", 10, "", "block", "a flood from one address"),
    ("unpaid_ip", "create", "5", 60, "", "block", "stock-locking: unpaid orders per address"),
    ("unpaid_email", "create", "3", 60, "", "block", "stock-locking: unpaid orders per mailbox"),
    ("lookup_failures", "create", "5", 15, "", "captcha", "someone guessing order look-ups"),
    ("amount", "pay", "2000", 60, "CNY", "hold", "large order: a person looks first"),
    ("amount", "pay", "300", 60, "USD", "hold", "large order: a person looks first"),
    ("amount", "pay", "300", 60, "EUR", "hold", "large order: a person looks first"),
    ("amount", "pay", "300", 60, "USDT", "hold", "large order: a person looks first"),
]


def add_defaults(apps, schema_editor):
    RiskRule = apps.get_model("risk", "RiskRule")
    if RiskRule.objects.exists():
        return
    RiskRule.objects.bulk_create(
        RiskRule(
            kind=kind,
            stage=stage,
            threshold=Decimal(threshold),
            window_minutes=window,
            currency=currency,
            outcome=outcome,
            note=note,
        )
        for kind, stage, threshold, window, currency, outcome, note in DEFAULT_RULES
    )


class Migration(migrations.Migration):
    dependencies = [("risk", "0001_initial")]

    operations = [migrations.RunPython(add_defaults, migrations.RunPython.noop)]
