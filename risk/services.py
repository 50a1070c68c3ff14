"""Screening checkouts and payments against the risk rules, and recording every decision.

Cost per screening is bounded whatever the traffic: one query for the rules, one for the
blacklist, at most one aggregate for every count (velocity and unpaid orders, all read from the
indexed ``RiskDecision`` table), and the decision's insert. Counts live in PostgreSQL, so a Redis
outage changes none of them; the one cache-based signal (failed order look-ups, counted by
``orders.throttle``) fails open. The blacklist is a database query and is never skipped.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _
from redis.exceptions import RedisError

from orders import throttle
from orders.models import Order
from risk import lock_objects
from risk.exceptions import CaptchaRequired, RiskBlocked
from risk.models import ListEntry, RiskDecision, RiskRule, Stage, address_key
from risk.screening import Buyer, Screening

logger = logging.getLogger(__name__)

Kind = RiskRule.Kind
Outcome = RiskDecision.Outcome

_COUNTED_OUTCOMES = (Outcome.ALLOW, Outcome.CAPTCHA_PASSED)
_UNPAID_KINDS = frozenset({Kind.UNPAID_IP, Kind.UNPAID_EMAIL})


# --- identities -----------------------------------------------------------------------------------
def normalise_email(email: str) -> str:
    """The mailbox behind an address: lower-case, without a ``+tag``, and for Gmail without
    dots, so ``A.B+x@Gmail.com`` and ``ab@gmail.com`` count as one buyer."""
    local, _sep, domain = email.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def email_hash(email: str) -> str:
    return salted_hmac(
        "cardvault.risk.email", normalise_email(email), algorithm="sha256"
    ).hexdigest()


def mask_email(email: str) -> str:
    """``buyer@example.com`` → ``b***r@example.com``: enough for a person to recognise."""
    local, _sep, domain = email.strip().rpartition("@")
    if len(local) <= 2:
        return f"{local[:1]}***@{domain}"
    return f"{local[0]}***{local[-1]}@{domain}"


def lookup_failures(*, ip: str | None) -> int:
    """Failed order look-ups from this IP (``orders.throttle``), read before any transaction.
    Fails open: with the cache down this signal is simply absent."""
    if ip is None:
        return 0
    try:
        return throttle.lookup_failure_count(ip)
    except (RedisError, OSError):
        logger.warning("risk: cache unavailable, look-up failures not checked")
        return 0


# --- rules ---------------------------------------------------------------------------------------
# Both look-ups run on every checkout and every paid callback. On PostgreSQL they are written
# out (the same conditions and order as the ORM forms below, arrays instead of IN lists so the
# statement's shape never varies): building the ORM queries cost more CPU than running them.
_RULES_SQL = (
    f"SELECT * FROM {RiskRule._meta.db_table}"  # noqa: S608  # nosec B608  (names from the model)
    " WHERE enabled AND stage = %s AND (merchant_id IS NULL OR merchant_id = %s)"
    " ORDER BY stage, kind, merchant_id, threshold"
)
_BLACKLIST_SQL = (
    f"SELECT * FROM {ListEntry._meta.db_table}"  # noqa: S608  # nosec B608  (names from the model)
    " WHERE enabled AND (expires_at IS NULL OR expires_at > %s)"
    " AND ((kind = %s AND value = ANY(%s)) OR (kind = %s AND value = ANY(%s))"
    " OR (kind = ANY(%s) AND range_start <= %s AND range_end >= %s))"
    " ORDER BY id LIMIT 1"
)


def applicable_rules(*, merchant_id: int | None, stage: str) -> list[RiskRule]:
    """Enabled rules for this stage: the merchant's own, and the platform's for every kind the
    merchant has no rule of. One query."""
    if connection.vendor == "postgresql":
        rules = list(RiskRule.objects.raw(_RULES_SQL, [stage, merchant_id]))
    else:
        rules = list(
            RiskRule.objects.filter(enabled=True, stage=stage).filter(
                Q(merchant__isnull=True) | Q(merchant_id=merchant_id)
            )
        )
    own_kinds = {rule.kind for rule in rules if rule.merchant_id is not None}
    return [rule for rule in rules if rule.merchant_id is not None or rule.kind not in own_kinds]


def blacklist_hit(*, email: str, ip: str | None, now: datetime) -> ListEntry | None:
    """The first enabled, unexpired blacklist entry matching the email, its domain (or a parent
    domain) or the IP (exactly or by range). One query; never skipped."""
    address = email.strip().lower()
    domain = address.rpartition("@")[2]
    parts = domain.split(".")
    domains = [".".join(parts[i:]) for i in range(len(parts) - 1)]
    if connection.vendor == "postgresql":
        # No IP: a key no range contains (ranges hold 32 hex digits; "" sorts before them all).
        key = address_key(ip) if ip else ""
        params = [
            now,
            ListEntry.Kind.EMAIL,
            sorted({address, normalise_email(address)}),
            ListEntry.Kind.EMAIL_DOMAIN,
            domains,
            [ListEntry.Kind.IP, ListEntry.Kind.CIDR] if ip else [],
            key,
            key,
        ]
        return next(iter(ListEntry.objects.raw(_BLACKLIST_SQL, params)), None)
    match = Q(kind=ListEntry.Kind.EMAIL, value__in={address, normalise_email(address)}) | Q(
        kind=ListEntry.Kind.EMAIL_DOMAIN, value__in=domains
    )
    if ip:
        key = address_key(ip)
        match |= Q(
            kind__in=[ListEntry.Kind.IP, ListEntry.Kind.CIDR],
            range_start__lte=key,
            range_end__gte=key,
        )
    return (
        ListEntry.objects.filter(match, enabled=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by("id")
        .first()
    )


def _counts(
    *, rules: list[RiskRule], buyer: Buyer, hashed_email: str, now: datetime
) -> dict[int, int]:
    """Every count rule's count in one aggregate over recent checkout decisions: checkouts in
    the rule's window, and unpaid orders that still hold their reservation."""
    if connection.vendor == "postgresql":
        return _counts_in_sql(rules=rules, buyer=buyer, hashed_email=hashed_email, now=now)
    return _counts_through_orm(rules=rules, buyer=buyer, hashed_email=hashed_email, now=now)


def _counts_through_orm(
    *, rules: list[RiskRule], buyer: Buyer, hashed_email: str, now: datetime
) -> dict[int, int]:
    ttl = timedelta(minutes=settings.ORDER_TTL_MINUTES)
    identity: dict[str, Q] = {"email": Q(email_hash=hashed_email)}
    if buyer.ip:
        identity["ip"] = Q(ip=buyer.ip)
    if buyer.device_id:
        identity["device"] = Q(device_id=buyer.device_id)
    dimension: dict[str, str] = {
        Kind.VELOCITY_IP: "ip",
        Kind.VELOCITY_EMAIL: "email",
        Kind.VELOCITY_DEVICE: "device",
        Kind.UNPAID_IP: "ip",
        Kind.UNPAID_EMAIL: "email",
    }
    aggregates: dict[str, Any] = {}
    earliest = now
    used = Q()
    for rule in rules:
        who = identity.get(dimension[rule.kind])
        if who is None:
            continue  # no IP or no device cookie: nothing to count for this rule
        if rule.kind in RiskRule.VELOCITY_KINDS:
            since = now - timedelta(minutes=rule.window_minutes)
            condition = who & Q(created_at__gte=since)
        else:
            since = now - ttl
            condition = (
                who
                & Q(created_at__gte=since, outcome__in=_COUNTED_OUTCOMES)
                & Q(order__status=Order.Status.PENDING, order__expires_at__gt=now)
            )
        earliest = min(earliest, since)
        used |= who
        aggregates[f"r{rule.pk}"] = Count("id", filter=condition)
    if not aggregates:
        return {}
    row = RiskDecision.objects.filter(used, stage=Stage.CREATE, created_at__gte=earliest).aggregate(
        **aggregates
    )
    return {int(name[1:]): int(value or 0) for name, value in row.items()}


_COUNT_DIMENSIONS: dict[str, str] = {
    Kind.VELOCITY_IP: "ip",
    Kind.VELOCITY_EMAIL: "email",
    Kind.VELOCITY_DEVICE: "device",
    Kind.UNPAID_IP: "ip",
    Kind.UNPAID_EMAIL: "email",
}
# Each dimension's column and how its value is written (the ip column is inet).
_COUNT_COLUMNS = {
    "email": "d.email_hash = %s",
    "ip": "d.ip = %s::inet",
    "device": "d.device_id = %s",
}


def _counts_in_sql(
    *, rules: list[RiskRule], buyer: Buyer, hashed_email: str, now: datetime
) -> dict[int, int]:
    """``_counts`` on PostgreSQL: the statement the ORM form builds (the same filters, the same
    LEFT JOIN to the order for unpaid counts), written out, because building it through the ORM
    cost more CPU than running it (checkout runs it every time)."""
    ttl = timedelta(minutes=settings.ORDER_TTL_MINUTES)
    values = {"email": hashed_email, "ip": buyer.ip, "device": buyer.device_id}
    columns: list[str] = []
    params: list[Any] = []
    counted: list[int] = []
    used: dict[str, None] = {}  # dimensions in first-use order
    earliest = now
    for rule in rules:
        dimension = _COUNT_DIMENSIONS[rule.kind]
        if not values[dimension]:
            continue  # no IP or no device cookie: nothing to count for this rule
        who = _COUNT_COLUMNS[dimension]
        if rule.kind in RiskRule.VELOCITY_KINDS:
            since = now - timedelta(minutes=rule.window_minutes)
            columns.append(f"COUNT(d.id) FILTER (WHERE {who} AND d.created_at >= %s)")
            params += [values[dimension], since]
        else:
            since = now - ttl
            columns.append(
                f"COUNT(d.id) FILTER (WHERE {who} AND d.created_at >= %s"
                " AND d.outcome = ANY(%s) AND o.expires_at > %s AND o.status = %s)"
            )
            params += [
                values[dimension],
                since,
                [str(outcome) for outcome in _COUNTED_OUTCOMES],
                now,
                Order.Status.PENDING.value,
            ]
        counted.append(rule.pk)
        earliest = min(earliest, since)
        used[dimension] = None
    if not counted:
        return {}
    sql = (
        f"SELECT {', '.join(columns)} FROM {RiskDecision._meta.db_table} d"  # noqa: S608  # nosec B608
        f" LEFT OUTER JOIN {Order._meta.db_table} o ON d.order_id = o.id"
        f" WHERE ({' OR '.join(_COUNT_COLUMNS[dimension] for dimension in used)})"
        " AND d.created_at >= %s AND d.stage = %s"
    )
    # Table names from the models, column conditions from the constants above; values bound.
    params += [values[dimension] for dimension in used]
    params += [earliest, Stage.CREATE.value]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return {pk: int(value or 0) for pk, value in zip(counted, row, strict=True)}


# --- screening -----------------------------------------------------------------------------------
def screen_checkout(
    *,
    merchant_id: int,
    amount: Decimal,
    currency: str,
    buyer: Buyer,
    captcha_passed: bool,
    lookup_failure_count: int,
    now: datetime,
) -> Screening:
    """Screen a checkout inside ``place_order``'s transaction, before anything is written.

    Locks: an advisory lock per buyer identity when count rules apply, so parallel checkouts
    of one buyer are counted one after another. Returns the allowing screening (the caller
    records it with the order). Raises ``RiskBlocked`` or ``CaptchaRequired`` carrying the
    screening, which the caller records after rolling back (``record_refusal``)."""
    base = Screening(
        stage=Stage.CREATE,
        outcome=Outcome.ALLOW,
        buyer=buyer,
        merchant_id=merchant_id,
        amount=amount,
        currency=currency,
    )
    rules = applicable_rules(merchant_id=merchant_id, stage=Stage.CREATE)
    entry = blacklist_hit(email=buyer.email, ip=buyer.ip, now=now)
    if entry is not None:
        refused = replace(
            base,
            outcome=Outcome.BLOCK,
            list_entry_id=entry.pk,
            reason=f"blacklist {entry.kind}: {entry.value}"[:300],
        )
        raise RiskBlocked(f"blacklisted ({entry.kind})", screening=refused)

    hashed = email_hash(buyer.email)
    count_rules = [r for r in rules if r.kind in RiskRule.VELOCITY_KINDS | _UNPAID_KINDS]
    if count_rules:
        lock_objects.lock_identities(
            [f"email:{hashed}"]
            + ([f"ip:{buyer.ip}"] if buyer.ip else [])
            + ([f"device:{buyer.device_id}"] if buyer.device_id else [])
        )
    counts = _counts(rules=count_rules, buyer=buyer, hashed_email=hashed, now=now)

    fired: list[tuple[RiskRule, str]] = []
    for rule in rules:
        observed = _observe(
            rule=rule,
            counts=counts,
            amount=amount,
            currency=currency,
            lookup_failure_count=lookup_failure_count,
            including_this_checkout=True,
        )
        if observed is not None and observed > rule.threshold:
            fired.append((rule, _describe(rule, observed)))

    blocking = [(r, why) for r, why in fired if r.outcome == RiskRule.Outcome.BLOCK]
    if blocking:
        rule, why = blocking[0]
        refused = replace(
            base,
            outcome=Outcome.BLOCK,
            rule_id=rule.pk,
            reason=why,
            user_message=_block_message(rule),
        )
        raise RiskBlocked(f"risk rule {rule.pk}: {why}", screening=refused)
    if fired:
        rule, why = fired[0]
        if not captcha_passed:
            asked = replace(base, outcome=Outcome.CAPTCHA, rule_id=rule.pk, reason=why)
            raise CaptchaRequired(f"risk rule {rule.pk}: {why}", screening=asked)
        return replace(base, outcome=Outcome.CAPTCHA_PASSED, rule_id=rule.pk, reason=why)
    return base


def _observe(
    *,
    rule: RiskRule,
    counts: dict[int, int],
    amount: Decimal,
    currency: str,
    lookup_failure_count: int,
    including_this_checkout: bool,
) -> Decimal | None:
    """The value a rule compares with its threshold, or None when it does not apply."""
    if rule.kind == Kind.AMOUNT:
        if rule.currency and rule.currency != currency:
            return None
        return amount
    if rule.kind == Kind.LOOKUP_FAILURES:
        return Decimal(lookup_failure_count)
    if rule.pk not in counts:
        return None
    return Decimal(counts[rule.pk] + (1 if including_this_checkout else 0))


def _describe(rule: RiskRule, observed: Decimal) -> str:
    if rule.kind == Kind.AMOUNT:
        return f"amount {observed} > {rule.threshold} (rule {rule.pk})"
    window = f" in {rule.window_minutes} min" if rule.kind in RiskRule.VELOCITY_KINDS else ""
    return f"{rule.kind} {observed:.0f} > {rule.threshold:.0f}{window} (rule {rule.pk})"


def _block_message(rule: RiskRule) -> Any:
    if rule.kind in _UNPAID_KINDS:
        return _(
            "You already have too many unpaid orders. Pay them, or wait until they expire "
            "(%(minutes)d minutes after ordering), then order again."
        ) % {"minutes": settings.ORDER_TTL_MINUTES}
    if rule.kind in RiskRule.VELOCITY_KINDS or rule.kind == Kind.LOOKUP_FAILURES:
        return _("Too many orders in a short time. Please try again later.")
    if rule.kind == Kind.AMOUNT:
        return _("This order is above the amount the store accepts in one order.")
    return None


def screen_payment(*, order: Order, now: datetime) -> Screening:
    """Screen a paid order inside ``confirm_payment``'s transaction, right before fulfilment,
    and record the decision with the order. Returns it; ``outcome == HOLD`` means: do not
    deliver, hold for staff review. Uses the database only (callbacks never depend on Redis)."""
    rules = applicable_rules(merchant_id=order.merchant_id, stage=Stage.PAY)
    device_id = ""
    user_agent = order.buyer_user_agent
    if any(rule.kind == Kind.VELOCITY_DEVICE for rule in rules):
        created = (
            RiskDecision.objects.filter(order=order, stage=Stage.CREATE).only("device_id").first()
        )
        device_id = created.device_id if created is not None else ""
    buyer = Buyer(ip=order.buyer_ip, email=order.email, device_id=device_id, user_agent=user_agent)
    screening = Screening(
        stage=Stage.PAY,
        outcome=Outcome.ALLOW,
        buyer=buyer,
        merchant_id=order.merchant_id,
        amount=order.amount,
        currency=order.currency,
    )
    entry = blacklist_hit(email=order.email, ip=order.buyer_ip, now=now)
    if entry is not None:
        screening = replace(
            screening,
            outcome=Outcome.HOLD,
            list_entry_id=entry.pk,
            reason=f"blacklist {entry.kind}: {entry.value}"[:300],
        )
    else:
        count_rules = [r for r in rules if r.kind in RiskRule.VELOCITY_KINDS]
        counts = _counts(
            rules=count_rules, buyer=buyer, hashed_email=email_hash(order.email), now=now
        )
        for rule in rules:
            observed = _observe(
                rule=rule,
                counts=counts,
                amount=order.amount,
                currency=order.currency,
                lookup_failure_count=0,
                including_this_checkout=False,  # its own checkout is already counted
            )
            if observed is not None and observed > rule.threshold:
                screening = replace(
                    screening,
                    outcome=Outcome.HOLD,
                    rule_id=rule.pk,
                    reason=_describe(rule, observed),
                )
                break
    record_screening(screening=screening, order=order, now=now)
    return screening


# --- recording -----------------------------------------------------------------------------------
def record_screening(
    *, screening: Screening, order: Order | None, now: datetime | None = None
) -> RiskDecision:
    """Write the decision; inside the caller's transaction when there is an order."""
    buyer = screening.buyer
    return RiskDecision.objects.create(
        order=order,
        merchant_id=screening.merchant_id,
        stage=screening.stage,
        outcome=screening.outcome,
        rule_id=screening.rule_id,
        list_entry_id=screening.list_entry_id,
        reason=screening.reason[:300],
        ip=buyer.ip,
        email_hash=email_hash(buyer.email) if buyer.email else "",
        email_masked=mask_email(buyer.email)[:254] if buyer.email else "",
        device_id=buyer.device_id[:64],
        user_agent=buyer.user_agent[:200],
        amount=screening.amount,
        currency=screening.currency,
        created_at=now or timezone.now(),
    )


def record_refusal(*, screening: Screening | None) -> None:
    """Record a refused checkout after ``place_order``'s transaction rolled back: the refusal
    itself is evidence (and counts towards velocity), though no order exists."""
    if screening is not None:
        record_screening(screening=screening, order=None)
