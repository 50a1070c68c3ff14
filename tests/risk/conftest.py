from decimal import Decimal

import pytest

from risk.models import ListEntry, RiskRule


@pytest.fixture(autouse=True)
def _no_rules(db):
    """Each test states the rules it exercises (the migration's defaults are removed)."""
    RiskRule.objects.all().delete()


def add_rule(
    kind: str,
    threshold: str | int,
    outcome: str,
    *,
    stage: str = "create",
    window_minutes: int = 60,
    merchant=None,
    currency: str = "",
) -> RiskRule:
    rule = RiskRule(
        kind=kind,
        stage=stage,
        threshold=Decimal(str(threshold)),
        window_minutes=window_minutes,
        outcome=outcome,
        merchant=merchant,
        currency=currency,
    )
    rule.full_clean()
    rule.save()
    return rule


def add_entry(kind: str, value: str) -> ListEntry:
    entry = ListEntry(kind=kind, value=value)
    entry.full_clean()
    entry.save()
    return entry
