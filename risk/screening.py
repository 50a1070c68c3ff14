"""What a screening looks at and what it concluded; shared by the services and the exceptions
that carry a refusal out of ``place_order``'s rolled-back transaction."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class Buyer:
    """Who is buying, as far as the risk rules are concerned."""

    ip: str | None
    email: str
    device_id: str = ""
    user_agent: str = ""


@dataclass(frozen=True, slots=True)
class Screening:
    stage: str
    outcome: str
    buyer: Buyer
    merchant_id: int | None
    amount: Decimal | None
    currency: str
    rule_id: int | None = None
    list_entry_id: int | None = None
    reason: str = ""
    # A lazy translation for the buyer, or None for the exception's default.
    user_message: Any = None
