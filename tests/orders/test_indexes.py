"""The merchant dashboard's paid-order queries have a partial index behind them."""

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_paid_orders_of_a_merchant_are_indexed_by_paid_time():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexname = %s",
            ["orders_order", "order_merchant_paid"],
        )
        rows = cursor.fetchall()

    assert len(rows) == 1
    definition = rows[0][0]
    assert "(merchant_id, paid_at)" in definition
    assert "WHERE (paid_at IS NOT NULL)" in definition
