"""Merchant notification settings, merchant notices (e-mail and Telegram, each sent at most once)
and outgoing webhooks: endpoints, and one delivery row per event and endpoint with its attempts."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from merchants.models import Merchant


class NotificationSettings(models.Model):
    """A merchant's notification preferences. No row means the defaults: e-mail in
    ``LANGUAGE_CODE``, no Telegram, no notice for automatically delivered orders."""

    merchant = models.OneToOneField(
        Merchant,
        on_delete=models.CASCADE,
        related_name="notification_settings",
        verbose_name=_("merchant"),
    )
    language = models.CharField(
        _("language"), max_length=16, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE
    )
    email_enabled = models.BooleanField(_("e-mail notices"), default=True)
    notify_every_order = models.BooleanField(
        _("notice for every paid order"),
        default=False,
        help_text=_("Manual-delivery orders are always notified; this adds automatic ones."),
    )
    telegram_chat_id = models.CharField(_("Telegram chat id"), max_length=64, blank=True)
    # The bot token is sealed with the vault keyring like gateway secrets (shop.vault).
    telegram_token_key_id = models.CharField(max_length=32, blank=True, editable=False)
    telegram_token_nonce = models.BinaryField(blank=True, default=b"", editable=False)
    telegram_token_ciphertext = models.BinaryField(blank=True, default=b"", editable=False)

    class Meta:
        verbose_name = _("notification settings")
        verbose_name_plural = _("notification settings")

    def __str__(self) -> str:
        return str(_("Notification settings of %(store)s") % {"store": self.merchant.name})

    @property
    def token_context(self) -> str:
        return f"telegram:{self.merchant_id}"

    @property
    def has_telegram(self) -> bool:
        return bool(self.telegram_chat_id and self.telegram_token_ciphertext)

    def get_telegram_token(self) -> str:
        from shop import vault

        if not self.telegram_token_ciphertext:
            return ""
        return vault.unseal_secret(
            key_id=self.telegram_token_key_id,
            nonce=bytes(self.telegram_token_nonce),
            ciphertext=bytes(self.telegram_token_ciphertext),
            context=self.token_context,
        )

    def set_telegram_token(self, token: str) -> None:
        from shop import vault

        if not token:
            self.telegram_token_key_id, self.telegram_token_nonce = "", b""
            self.telegram_token_ciphertext = b""
            return
        sealed = vault.seal_secret(token, context=self.token_context)
        self.telegram_token_key_id = sealed.key_id
        self.telegram_token_nonce = sealed.nonce
        self.telegram_token_ciphertext = sealed.ciphertext


class MerchantNotice(models.Model):
    """One notice to a merchant on one channel, claimed before sending (a conditional update) so
    a task delivered twice sends it once."""

    class Channel(models.TextChoices):
        EMAIL = "email", _("E-mail")
        TELEGRAM = "telegram", _("Telegram")

    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="+", verbose_name=_("merchant")
    )
    kind = models.CharField(_("kind"), max_length=32)
    object_key = models.CharField(_("about"), max_length=64)
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("merchant notice")
        verbose_name_plural = _("merchant notices")
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "object_key", "channel"], name="merchantnotice_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_key} ({self.channel})"


class AffiliateNotice(models.Model):
    """One e-mail to an affiliate (``affiliates.notifications``), claimed before sending like a
    ``MerchantNotice`` so a task delivered twice sends it once. ``language`` is the one the
    affiliate used when the notice's subject began (a withdrawal request), empty if unknown."""

    affiliate = models.ForeignKey(
        "affiliates.Affiliate",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("affiliate"),
    )
    kind = models.CharField(_("kind"), max_length=32)
    object_key = models.CharField(_("about"), max_length=64)
    language = models.CharField(_("language"), max_length=16, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("affiliate notice")
        verbose_name_plural = _("affiliate notices")
        constraints = [
            models.UniqueConstraint(fields=["kind", "object_key"], name="affiliatenotice_once")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_key}"


class LowStockState(models.Model):
    """Whether a product is below its threshold now, so a notice goes out once per crossing."""

    product = models.OneToOneField(
        "shop.Product", on_delete=models.CASCADE, related_name="+", verbose_name=_("product")
    )
    is_low = models.BooleanField(default=False)
    crossings = models.PositiveIntegerField(default=0)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"product {self.product_id}: {'low' if self.is_low else 'ok'}"


class WebhookEvent(models.TextChoices):
    ORDER_PAID = "order.paid", "order.paid"
    ORDER_DELIVERED = "order.delivered", "order.delivered"
    ORDER_REFUNDED = "order.refunded", "order.refunded"
    DISPUTE_OPENED = "dispute.opened", "dispute.opened"
    STOCK_LOW = "stock.low", "stock.low"


def default_events() -> list[str]:
    return list(WebhookEvent.values)


class WebhookEndpoint(models.Model):
    merchant = models.ForeignKey(
        Merchant,
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
        verbose_name=_("merchant"),
    )
    url = models.URLField(_("URL"), max_length=500)
    events = models.JSONField(_("events"), default=default_events)
    is_active = models.BooleanField(_("active"), default=True)
    # The signing secret, sealed with the vault keyring; shown to the merchant on the endpoint's
    # page, never in lists, logs or messages.
    secret_key_id = models.CharField(max_length=32, blank=True, editable=False)
    secret_nonce = models.BinaryField(blank=True, default=b"", editable=False)
    secret_ciphertext = models.BinaryField(blank=True, default=b"", editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ["id"]

    def __str__(self) -> str:
        return self.url

    @property
    def secret_context(self) -> str:
        return f"webhook:{self.merchant_id}"

    def get_secret(self) -> str:
        from shop import vault

        if not self.secret_ciphertext:
            return ""
        return vault.unseal_secret(
            key_id=self.secret_key_id,
            nonce=bytes(self.secret_nonce),
            ciphertext=bytes(self.secret_ciphertext),
            context=self.secret_context,
        )

    def set_secret(self, secret: str) -> None:
        from shop import vault

        sealed = vault.seal_secret(secret, context=self.secret_context)
        self.secret_key_id = sealed.key_id
        self.secret_nonce = sealed.nonce
        self.secret_ciphertext = sealed.ciphertext


class WebhookDelivery(models.Model):
    """One event for one endpoint. ``event_key`` (event + object, e.g. ``order.paid:42``) is
    unique per endpoint, so an event emitted twice is delivered once."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    endpoint = models.ForeignKey(
        WebhookEndpoint,
        on_delete=models.CASCADE,
        related_name="deliveries",
        verbose_name=_("endpoint"),
    )
    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="+", verbose_name=_("merchant")
    )
    event = models.CharField(_("event"), max_length=32, choices=WebhookEvent.choices)
    event_key = models.CharField(_("event key"), max_length=96)
    payload = models.JSONField(_("payload"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    response_code = models.PositiveIntegerField(_("response code"), null=True, blank=True)
    response_excerpt = models.CharField(_("response"), max_length=500, blank=True)
    last_error = models.CharField(_("error"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_key"], name="webhookdelivery_once"),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="webhookdelivery_due",
            )
        ]

    def __str__(self) -> str:
        return f"Delivery #{self.pk} ({self.event})"


class WebhookAttempt(models.Model):
    """The delivery log: one row per HTTP attempt, with the response code and an excerpt."""

    delivery = models.ForeignKey(
        WebhookDelivery,
        on_delete=models.CASCADE,
        related_name="attempt_log",
        verbose_name=_("delivery"),
    )
    number = models.PositiveIntegerField(_("attempt"))
    response_code = models.PositiveIntegerField(_("response code"), null=True, blank=True)
    response_excerpt = models.CharField(_("response"), max_length=500, blank=True)
    error = models.CharField(_("error"), max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    created_at = models.DateTimeField(_("at"), auto_now_add=True)

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        ordering = ["id"]

    def __str__(self) -> str:
        return f"attempt {self.number}"
