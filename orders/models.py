import json
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from merchants.models import Merchant
from shop.models import CURRENCIES, CardKey, Product


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Awaiting payment")
        PAID = "paid", _("Paid, awaiting delivery")
        DELIVERED = "delivered", _("Delivered")
        EXPIRED = "expired", _("Expired")
        CANCELLED = "cancelled", _("Cancelled")
        HELD = "held", _("Held for review")
        UNFULFILLED = "unfulfilled", _("Paid, out of stock")
        REFUNDED = "refunded", _("Refunded")
        PARTIALLY_REFUNDED = "partially_refunded", _("Partially refunded")

    # Public identity: random, never sequential (sequential ids leak a shop's volume).
    number = models.CharField(_("order number"), max_length=24, unique=True, editable=False)
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="orders", verbose_name=_("merchant")
    )
    product = models.ForeignKey(
        Product, on_delete=models.PROTECT, related_name="orders", verbose_name=_("product")
    )
    quantity = models.PositiveIntegerField(_("quantity"))
    # The unit price charged: the product's price or its wholesale tier for the quantity.
    unit_price = models.DecimalField(_("unit price"), max_digits=12, decimal_places=2)
    # What the buyer pays: unit_price × quantity − discount.
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    discount = models.DecimalField(
        _("discount"), max_digits=12, decimal_places=2, default=Decimal("0.00")
    )
    coupon = models.ForeignKey(
        "promotions.Coupon",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="orders",
        verbose_name=_("coupon"),
    )
    currency = models.CharField(_("currency"), max_length=4, choices=CURRENCIES)
    status = models.CharField(
        _("status"), max_length=24, choices=Status.choices, default=Status.PENDING
    )
    email = models.EmailField(_("email"))
    # sha256 of the order-page token; the token itself is derived (HMAC) so the receipt task can
    # rebuild the link, but a database dump alone does not reveal it.
    token_nonce = models.CharField(max_length=32, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    query_password_hash = models.CharField(max_length=200, blank=True, editable=False)
    manual_inputs = models.JSONField(_("buyer inputs"), default=dict, blank=True)
    gateway = models.CharField(_("payment method"), max_length=32, blank=True)
    language = models.CharField(_("buyer language"), max_length=8, default="en")
    buyer_ip = models.GenericIPAddressField(_("buyer IP"), null=True, blank=True)
    buyer_user_agent = models.CharField(_("buyer user agent"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    expires_at = models.DateTimeField(_("pay before"))
    paid_at = models.DateTimeField(_("paid at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    # Evidence for disputes: when, from where the keys were first shown.
    keys_first_viewed_at = models.DateTimeField(_("keys first viewed at"), null=True, blank=True)
    keys_first_viewed_ip = models.GenericIPAddressField(
        _("keys first viewed from IP"), null=True, blank=True
    )
    keys_first_viewed_user_agent = models.CharField(
        _("keys first viewed with"), max_length=300, blank=True
    )
    receipt_sent_at = models.DateTimeField(_("receipt sent at"), null=True, blank=True)
    # A sender's lease on the receipt: a worker killed mid-send leaves it behind, and the repair
    # job sends again once the lease is stale.
    receipt_claimed_at = models.DateTimeField(_("receipt claimed at"), null=True, blank=True)
    # Set when something needs a person: a mismatched payment, a failed automatic refund, an order
    # the repair job could not deliver. Cleared by staff.
    needs_attention = models.CharField(_("needs attention"), max_length=300, blank=True)
    merchant_notified_at = models.DateTimeField(_("merchant notified at"), null=True, blank=True)
    # Set when the buyer's personal data was erased (orders.privacy); the accounting stays.
    anonymised_at = models.DateTimeField(_("anonymised at"), null=True, blank=True)

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    status__in=[
                        "pending",
                        "paid",
                        "delivered",
                        "expired",
                        "cancelled",
                        "held",
                        "unfulfilled",
                        "refunded",
                        "partially_refunded",
                    ]
                ),
                name="order_status_valid",
            ),
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="order_quantity_min"),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="order_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(discount__gte=0), name="order_discount_not_negative"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="order_status_expiry"),
            models.Index(fields=["merchant", "-created_at"], name="order_merchant_recent"),
            # The retention job's candidates: orders still holding personal data, oldest first.
            models.Index(
                fields=["created_at"],
                condition=models.Q(anonymised_at__isnull=True),
                name="order_not_anonymised",
            ),
            # The merchant dashboard (merchants.analytics) reads paid orders of one store in a
            # time window; unpaid orders, most rows on a busy store, are left out of the index.
            models.Index(
                fields=["merchant", "paid_at"],
                condition=models.Q(paid_at__isnull=False),
                name="order_merchant_paid",
            ),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {Order.Status.DELIVERED, Order.Status.REFUNDED, Order.Status.PARTIALLY_REFUNDED}
)


class OrderStatusChange(models.Model):
    """Audit trail: every transition, who or what caused it, and why."""

    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, related_name="status_changes", verbose_name=_("order")
    )
    from_status = models.CharField(_("from"), max_length=24)
    to_status = models.CharField(_("to"), max_length=24)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        verbose_name=_("by user"),
    )
    source = models.CharField(_("source"), max_length=40)
    note = models.CharField(_("note"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("at"), auto_now_add=True)

    class Meta:
        verbose_name = _("order status change")
        verbose_name_plural = _("order status changes")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.from_status} → {self.to_status}"


class Payment(models.Model):
    """One attempt to pay an order through one gateway."""

    class Status(models.TextChoices):
        CREATED = "created", _("Created")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    reference = models.CharField(_("reference"), max_length=40, unique=True, editable=False)
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="payments", verbose_name=_("order")
    )
    gateway = models.CharField(_("gateway"), max_length=32)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=4, choices=CURRENCIES)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.CREATED
    )
    # The gateway's own id for the trade; unique per gateway so one trade pays one order only.
    # NULL (not "") until paid, so open payments never collide in the unique constraint.
    gateway_trade_id = models.CharField(  # noqa: DJ001
        _("gateway trade id"), max_length=128, null=True, blank=True
    )
    # What the gateway handed back for the buyer's pay page (QR content, wallet address, the
    # exact amount to send); never credentials.
    gateway_data = models.JSONField(_("gateway data"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    last_queried_at = models.DateTimeField(_("last queried at"), null=True, blank=True)

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "gateway_trade_id"], name="payment_unique_gateway_trade"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["created", "succeeded", "failed"]),
                name="payment_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.reference


class PaymentEvent(models.Model):
    """A verified gateway event, stored before it is acted on. The unique (gateway, event_id)
    makes processing at-most-once: a replay hits the constraint and returns the first outcome."""

    class Kind(models.TextChoices):
        PAID = "paid", _("Paid")
        FAILED = "failed", _("Failed")

    class Outcome(models.TextChoices):
        DELIVERED = "delivered", _("Order delivered")
        AWAITING_MERCHANT = "awaiting_merchant", _("Paid; merchant delivers by hand")
        UNFULFILLED = "unfulfilled", _("Paid; not enough stock")
        ALREADY_PAID = "already_paid", _("Payment already recorded")
        DUPLICATE_PAYMENT = "duplicate_payment", _("Order already paid or closed: refunded")
        FAILED_RECORDED = "failed_recorded", _("Failure recorded")
        HELD = "held", _("Paid; held for risk review")

    gateway = models.CharField(_("gateway"), max_length=32)
    event_id = models.CharField(_("event id"), max_length=128)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="events", verbose_name=_("payment")
    )
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=4)
    gateway_trade_id = models.CharField(_("gateway trade id"), max_length=128, blank=True)
    outcome = models.CharField(_("outcome"), max_length=24, choices=Outcome.choices, blank=True)
    created_at = models.DateTimeField(_("received at"), auto_now_add=True)

    class Meta:
        verbose_name = _("payment event")
        verbose_name_plural = _("payment events")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["gateway", "event_id"], name="paymentevent_unique_id"),
        ]

    def __str__(self) -> str:
        return f"{self.gateway}:{self.event_id}"


class PaymentNotification(models.Model):
    """Every inbound callback, verified or not: the staff console of what gateways sent us."""

    class Result(models.TextChoices):
        ACCEPTED = "accepted", _("Accepted")
        DUPLICATE = "duplicate", _("Duplicate (already processed)")
        IGNORED = "ignored", _("Genuine, nothing to do")
        REJECTED = "rejected", _("Rejected")

    gateway = models.CharField(_("gateway"), max_length=32)
    remote_ip = models.GenericIPAddressField(_("from IP"), null=True, blank=True)
    method = models.CharField(_("method"), max_length=8)
    body = models.TextField(_("body"), blank=True)
    # Enough of the request to process it again from the console: its headers (signature
    # headers included; no cookies or auth) and query string.
    headers = models.JSONField(_("headers"), default=dict, blank=True)
    query = models.JSONField(_("query string"), default=dict, blank=True)
    payment_reference = models.CharField(_("payment reference"), max_length=40, blank=True)
    result = models.CharField(_("result"), max_length=16, choices=Result.choices)
    detail = models.CharField(_("detail"), max_length=300, blank=True)
    event = models.ForeignKey(
        PaymentEvent,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="notifications",
        verbose_name=_("event"),
    )
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)

    class Meta:
        verbose_name = _("payment notification")
        verbose_name_plural = _("payment notifications")
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.gateway} {self.result} {self.received_at:%Y-%m-%d %H:%M:%S}"


class Delivery(models.Model):
    """What an order received: a stock key (auto), the shared key (reusable), or goods the
    merchant typed in (manual, sealed like a key and bound to this order)."""

    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="deliveries", verbose_name=_("order")
    )
    card_key = models.ForeignKey(
        CardKey,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="deliveries",
        verbose_name=_("card key"),
    )
    shared = models.BooleanField(_("shared key"), default=False)
    key_id = models.CharField(max_length=32, blank=True)
    nonce = models.BinaryField(max_length=12, null=True, blank=True)
    ciphertext = models.BinaryField(null=True, blank=True)
    delivered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        verbose_name=_("delivered by"),
    )
    created_at = models.DateTimeField(_("delivered at"), auto_now_add=True)

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        ordering = ["id"]
        constraints = [
            # A unique key is delivered once, ever; only the reusable key repeats.
            models.UniqueConstraint(
                fields=["card_key"],
                condition=models.Q(shared=False, card_key__isnull=False),
                name="delivery_unique_key",
            ),
            models.CheckConstraint(
                condition=models.Q(card_key__isnull=False) | models.Q(ciphertext__isnull=False),
                name="delivery_has_content",
            ),
        ]

    def __str__(self) -> str:
        return f"Delivery #{self.pk} of {self.order_id}"

    def sealed_content(self) -> tuple[bytes, bytes]:
        """Nonce and ciphertext of a manual delivery (the check constraint guarantees them)."""
        if self.nonce is None or self.ciphertext is None:
            raise ValueError(f"delivery {self.pk} holds no sealed content")
        return bytes(self.nonce), bytes(self.ciphertext)


# Allowed order transitions: the one table every status change is checked against.
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    Order.Status.PENDING: frozenset(
        {Order.Status.PAID, Order.Status.EXPIRED, Order.Status.CANCELLED}
    ),
    # A late payment for an expired or cancelled order is honoured, not dropped (the buyer paid).
    Order.Status.EXPIRED: frozenset({Order.Status.PAID}),
    Order.Status.CANCELLED: frozenset({Order.Status.PAID}),
    Order.Status.PAID: frozenset(
        {
            Order.Status.DELIVERED,
            Order.Status.UNFULFILLED,
            Order.Status.HELD,
            Order.Status.REFUNDED,
            Order.Status.PARTIALLY_REFUNDED,
        }
    ),
    # Released by staff (risk review): back to paid, then fulfilled like a callback would.
    Order.Status.HELD: frozenset(
        {
            Order.Status.PAID,
            Order.Status.DELIVERED,
            Order.Status.REFUNDED,
            Order.Status.PARTIALLY_REFUNDED,
        }
    ),
    Order.Status.UNFULFILLED: frozenset(
        {Order.Status.DELIVERED, Order.Status.REFUNDED, Order.Status.PARTIALLY_REFUNDED}
    ),
    Order.Status.DELIVERED: frozenset({Order.Status.REFUNDED, Order.Status.PARTIALLY_REFUNDED}),
    Order.Status.PARTIALLY_REFUNDED: frozenset({Order.Status.REFUNDED}),
    Order.Status.REFUNDED: frozenset(),
}


class GatewayConfig(models.Model):
    """A payment gateway as staff configured it: one row per gateway, credentials sealed with
    the vault keyring (bound to the gateway's name), never shown back in the admin."""

    gateway = models.CharField(_("gateway"), max_length=32, unique=True)
    enabled = models.BooleanField(_("enabled"), default=False)
    display_name = models.CharField(_("display name"), max_length=60, blank=True)
    fee_rate = models.DecimalField(
        _("fee rate"),
        max_digits=6,
        decimal_places=4,
        default=Decimal("0"),
        help_text=_("The gateway's fee as a fraction of the amount, e.g. 0.006 for 0.6%."),
    )
    min_amount = models.DecimalField(
        _("minimum amount"), max_digits=12, decimal_places=2, null=True, blank=True
    )
    max_amount = models.DecimalField(
        _("maximum amount"), max_digits=12, decimal_places=2, null=True, blank=True
    )
    currencies = models.JSONField(
        _("currencies"), default=list, blank=True, help_text=_("Empty: the gateway's default.")
    )
    options = models.JSONField(_("options"), default=dict, blank=True)
    secrets_key_id = models.CharField(max_length=32, blank=True, editable=False)
    secrets_nonce = models.BinaryField(blank=True, default=b"", editable=False)
    secrets_ciphertext = models.BinaryField(blank=True, default=b"", editable=False)
    sort_order = models.PositiveSmallIntegerField(_("sort order"), default=0)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("payment gateway")
        verbose_name_plural = _("payment gateways")
        ordering = ["sort_order", "gateway"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(fee_rate__gte=0) & models.Q(fee_rate__lt=1),
                name="gatewayconfig_fee_rate_range",
            ),
        ]

    def __str__(self) -> str:
        return self.display_name or self.gateway

    @property
    def secret_context(self) -> str:
        return f"gateway:{self.gateway}"

    def get_secrets(self) -> dict[str, str]:
        from shop import vault

        if not self.secrets_ciphertext:
            return {}
        return json.loads(
            vault.unseal_secret(
                key_id=self.secrets_key_id,
                nonce=bytes(self.secrets_nonce),
                ciphertext=bytes(self.secrets_ciphertext),
                context=self.secret_context,
            )
        )

    def set_secrets(self, values: dict[str, str]) -> None:
        from shop import vault

        sealed = vault.seal_secret(json.dumps(values), context=self.secret_context)
        self.secrets_key_id = sealed.key_id
        self.secrets_nonce = sealed.nonce
        self.secrets_ciphertext = sealed.ciphertext


class Refund(models.Model):
    """Money going back to a buyer, requested once under a caller-chosen id (idempotency)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending at the gateway")
        SUCCEEDED = "succeeded", _("Refunded")
        MANUAL = "manual", _("To be paid out by staff")
        FAILED = "failed", _("Failed")

    request_id = models.CharField(_("request id"), max_length=80, unique=True)
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="refunds", verbose_name=_("order")
    )
    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="refunds", verbose_name=_("payment")
    )
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=4, choices=CURRENCIES)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    reason = models.CharField(_("reason"), max_length=300)
    source = models.CharField(_("source"), max_length=40)
    gateway_refund_id = models.CharField(_("gateway refund id"), max_length=128, blank=True)
    failure = models.CharField(_("failure"), max_length=300, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("requested by"),
    )
    paid_out_reference = models.CharField(_("payout reference"), max_length=128, blank=True)
    buyer_notified_at = models.DateTimeField(_("buyer notified at"), null=True, blank=True)
    # 先行赔付: the guarantee fund pays the buyer and the merchant's share is clawed back.
    funded_by_platform = models.BooleanField(_("paid by the platform first"), default=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "succeeded", "manual", "failed"]),
                name="refund_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.amount} {self.currency}"


class GatewayAlert(models.Model):
    """A gateway health alert sent to staff (also the memory that keeps alerts from repeating)."""

    class Kind(models.TextChoices):
        FAILING = "failing", _("Callbacks failing verification")
        SILENT = "silent", _("Callbacks stopped arriving")

    gateway = models.CharField(_("gateway"), max_length=32)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    detail = models.CharField(_("detail"), max_length=300)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("gateway alert")
        verbose_name_plural = _("gateway alerts")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.gateway} {self.kind}"


class UnmatchedNotification(PaymentNotification):
    """The staff inbox of notifications that matched no payment of ours."""

    class Meta:
        proxy = True
        verbose_name = _("unmatched payment notification")
        verbose_name_plural = _("unmatched payment notifications")
