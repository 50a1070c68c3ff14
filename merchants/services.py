"""Writes of the merchants app: admission (apply, approve, reject) and the daily inspection.

An application creates the applicant's user inactive and without a merchant, so it can sign in
nowhere; approval creates the merchant (active) and its owner membership and activates the user in
one transaction. The daily inspection measures every selling merchant (``selectors.
merchant_metrics``), writes one ``MerchantInspection`` per merchant into the day's
``InspectionReport``, e-mails staff about warnings and suspends a store over a hard threshold.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from merchants import selectors
from merchants.exceptions import (
    ApplicationAlreadyDecided,
    ApplicationDecisionRefused,
    InvalidApplication,
)
from merchants.lock_objects import lock_application
from merchants.models import (
    ApplicationDocument,
    CustomerNote,
    InspectionReport,
    Merchant,
    MerchantApplication,
    MerchantInspection,
    MerchantMembership,
    ProductViewDay,
)
from shop import uploads
from shop.models import Product

logger = logging.getLogger(__name__)

DOCUMENT_KINDS = (uploads.PNG, uploads.JPEG, uploads.PDF)
MAX_DOCUMENTS = 5
# Under MEDIA_ROOT; no URL serves it (staff download through the admin's checked view).
PRIVATE_PREFIX = "private/merchant-applications"


# --- admission ------------------------------------------------------------------------------
def validate_document(upload: UploadedFile) -> uploads.UploadKind:
    """PNG, JPEG or PDF by content, at most ``MERCHANT_DOCUMENT_MAX_BYTES``. Raises
    ``ValidationError`` (translated)."""
    return uploads.validate_upload(
        upload, allowed=DOCUMENT_KINDS, max_bytes=settings.MERCHANT_DOCUMENT_MAX_BYTES
    )


def submit_application(
    *,
    username: str,
    email: str,
    password: str,
    store_name: str,
    slug: str,
    contact: str,
    goods: str,
    documents: list[UploadedFile],
    language: str,
) -> MerchantApplication:
    """Record an application with its documents and the applicant's (inactive) user.

    The documents are checked by content and stored under random names first; the user, the
    application and the document rows are written in one transaction, and the stored files are
    deleted again if it fails. Raises ``InvalidApplication`` (nothing written) for a taken
    username or store address, or a missing, oversized or wrong-type document."""
    errors: dict[str, list[str]] = {}
    kinds: list[uploads.UploadKind] = []
    if not documents:
        errors["documents"] = [_("Attach at least one identity or business document.")]
    elif len(documents) > MAX_DOCUMENTS:
        errors["documents"] = [_("Attach at most %(n)d documents.") % {"n": MAX_DOCUMENTS}]
    else:
        for upload in documents:
            try:
                kinds.append(validate_document(upload))
            except ValidationError as exc:
                errors.setdefault("documents", []).extend(exc.messages)
    if selectors.store_slug_taken(slug=slug):
        errors["slug"] = [_("This store address is taken.")]
    user_model = get_user_model()
    if user_model.objects.filter(username__iexact=username).exists():
        errors["username"] = [_("This username is taken.")]
    if errors:
        raise InvalidApplication("invalid application", errors=errors)

    password_hash = make_password(password)  # slow: before the transaction
    stored: list[str] = []
    try:
        for upload, kind in zip(documents, kinds, strict=True):
            upload.seek(0)
            name = (
                f"{PRIVATE_PREFIX}/{timezone.now():%Y/%m}/{secrets.token_hex(16)}.{kind.extension}"
            )
            stored.append(default_storage.save(name, upload))
        with transaction.atomic(durable=True):
            user = user_model(username=username, email=email, is_active=False)
            user.password = password_hash
            user.save()
            application = MerchantApplication(
                user=user,
                store_name=store_name,
                slug=slug,
                contact=contact,
                goods=goods,
                language=language[:8],
            )
            application.full_clean(exclude=["user"])
            application.save()
            ApplicationDocument.objects.bulk_create(
                ApplicationDocument(
                    application=application,
                    file=name,
                    kind=kind.name,
                    original_name=(upload.name or "")[:200],
                    size=upload.size or 0,
                )
                for name, kind, upload in zip(stored, kinds, documents, strict=True)
            )
    except IntegrityError:
        _delete_files(stored)
        # A concurrent application took the username or the store address meanwhile.
        raise InvalidApplication(
            "taken meanwhile",
            errors={"__all__": [_("This username or store address was just taken.")]},
        ) from None
    except ValidationError as exc:
        _delete_files(stored)
        raise InvalidApplication("invalid application", errors=exc.message_dict) from None
    except BaseException:
        _delete_files(stored)
        raise
    return application


def _delete_files(names: list[str]) -> None:
    for name in names:
        default_storage.delete(name)


def approve_application(*, application_id: int, actor: Any) -> Merchant:
    """Approve an open application: the merchant (active), its owner membership and the now
    active user, in one transaction under a lock on the application; the applicant is e-mailed
    after commit. Raises ``ApplicationAlreadyDecided``, ``ApplicationDecisionRefused`` (the store
    address was taken by a merchant staff created meanwhile)."""
    from merchants import tasks

    now = timezone.now()
    try:
        with transaction.atomic(durable=True):
            application = lock_application(application_id=application_id)
            if application.status != MerchantApplication.Status.SUBMITTED:
                raise ApplicationAlreadyDecided(f"application {application_id} is decided")
            user = application.user
            merchant = Merchant.objects.create(
                slug=application.slug,
                name=application.store_name,
                contact=application.contact,
                status=Merchant.Status.ACTIVE,
                owner=user,
            )
            MerchantMembership.objects.create(
                merchant=merchant, user=user, role=MerchantMembership.Role.OWNER
            )
            user.is_active = True
            user.save(update_fields=["is_active"])
            application.status = MerchantApplication.Status.APPROVED
            application.merchant = merchant
            application.decided_by = actor
            application.decided_at = now
            application.save(update_fields=["status", "merchant", "decided_by", "decided_at"])
            transaction.on_commit(
                partial(tasks.send_application_decision_task.delay, application_id=application.pk)
            )
    except IntegrityError:
        raise ApplicationDecisionRefused(
            _("The store address “%(slug)s” is already used by another merchant.")
            % {"slug": application.slug}
        ) from None
    return merchant


def reject_application(*, application_id: int, actor: Any, reason: str) -> MerchantApplication:
    """Reject an open application with a written reason (e-mailed to the applicant after
    commit). The user stays inactive. Raises ``ApplicationAlreadyDecided``,
    ``ApplicationDecisionRefused`` (no reason)."""
    from merchants import tasks

    reason = reason.strip()
    if not reason:
        raise ApplicationDecisionRefused(_("Give the applicant a reason for the rejection."))
    with transaction.atomic(durable=True):
        application = lock_application(application_id=application_id)
        if application.status != MerchantApplication.Status.SUBMITTED:
            raise ApplicationAlreadyDecided(f"application {application_id} is decided")
        application.status = MerchantApplication.Status.REJECTED
        application.reason = reason
        application.decided_by = actor
        application.decided_at = timezone.now()
        application.save(update_fields=["status", "reason", "decided_by", "decided_at"])
        transaction.on_commit(
            partial(tasks.send_application_decision_task.delay, application_id=application.pk)
        )
    return application


def claim_applicant_notice(*, application_id: int) -> bool:
    """Take the right to e-mail the decision (once, even if the task runs twice)."""
    return bool(
        MerchantApplication.objects.filter(
            pk=application_id,
            applicant_notified_at__isnull=True,
            status__in=[MerchantApplication.Status.APPROVED, MerchantApplication.Status.REJECTED],
        ).update(applicant_notified_at=timezone.now())
    )


def release_applicant_notice(*, application_id: int) -> None:
    MerchantApplication.objects.filter(pk=application_id).update(applicant_notified_at=None)


# --- daily inspection -----------------------------------------------------------------------
LEVEL_ORDER = {
    MerchantInspection.Level.OK: 0,
    MerchantInspection.Level.WARNING: 1,
    MerchantInspection.Level.HARD: 2,
}


@dataclass(frozen=True)
class Thresholds:
    warning: Decimal
    hard: Decimal

    @classmethod
    def from_settings(cls, name: str) -> Thresholds:
        return cls(
            warning=Decimal(str(getattr(settings, f"{name}_WARNING"))),
            hard=Decimal(str(getattr(settings, f"{name}_HARD"))),
        )

    def level(self, value: Decimal) -> str:
        """``hard`` over a non-zero hard threshold, ``warning`` over a non-zero warning one."""
        if self.hard > 0 and value > self.hard:
            return MerchantInspection.Level.HARD
        if self.warning > 0 and value > self.warning:
            return MerchantInspection.Level.WARNING
        return MerchantInspection.Level.OK


def judge(
    *, metrics: selectors.MerchantMetrics, previous_prices: dict[str, str]
) -> tuple[str, list[dict[str, Any]]]:
    """The findings over a threshold and the worst level among them.

    Rates count only with ``INSPECTION_MIN_ORDERS`` orders in the window; the sales spike only
    with ``INSPECTION_SPIKE_MIN_ORDERS`` orders paid in the last 24 hours (with no sales in the
    14 days before, any such day is a spike); a price change is against the price recorded by
    the previous inspection, for products that existed then."""
    findings: list[dict[str, Any]] = []

    def check(metric: str, value: Decimal, setting: str, **extra: Any) -> None:
        thresholds = Thresholds.from_settings(setting)
        level = thresholds.level(value)
        if level != MerchantInspection.Level.OK:
            limit = (
                thresholds.hard if level == MerchantInspection.Level.HARD else thresholds.warning
            )
            findings.append(
                {"metric": metric, "value": str(value), "threshold": str(limit), "level": level}
                | extra
            )

    minimum = settings.INSPECTION_MIN_ORDERS
    if metrics.delivered_orders >= minimum:
        check("dispute_rate", metrics.dispute_rate, "INSPECTION_DISPUTE_RATE")
        check("invalid_key_rate", metrics.invalid_key_rate, "INSPECTION_INVALID_KEY_RATE")
    if metrics.paid_orders >= minimum:
        check("refund_rate", metrics.refund_rate, "INSPECTION_REFUND_RATE")
    if metrics.paid_last_day >= settings.INSPECTION_SPIKE_MIN_ORDERS:
        if metrics.daily_mean_before > 0:
            ratio = (Decimal(metrics.paid_last_day) / metrics.daily_mean_before).quantize(
                selectors.RATE_PLACES
            )
        else:
            ratio = Decimal(metrics.paid_last_day)  # from nothing: every unit is a multiple
        check("sales_spike", ratio, "INSPECTION_SALES_SPIKE")
    for product_id, new in sorted(metrics.prices.items(), key=lambda item: int(item[0])):
        old = previous_prices.get(product_id)
        if old is None or Decimal(old) <= 0:
            continue
        change = (abs(Decimal(new) - Decimal(old)) / Decimal(old)).quantize(selectors.RATE_PLACES)
        check(
            "price_change",
            change,
            "INSPECTION_PRICE_CHANGE",
            product_id=int(product_id),
            old_price=old,
            new_price=new,
        )
    worst = max(
        (finding["level"] for finding in findings),
        key=LEVEL_ORDER.__getitem__,
        default=MerchantInspection.Level.OK,
    )
    return worst, findings


def run_daily_inspection(*, now: datetime | None = None) -> InspectionReport:
    """Inspect every selling merchant once per day (idempotent: a second run the same day only
    inspects merchants the first did not reach, and sends nothing twice).

    Per merchant, one transaction writes its ``MerchantInspection`` (unique per report and
    merchant, so a concurrent run's duplicate rolls back whole) and, over a hard threshold,
    suspends the store with a conditional update (active → suspended: checkout refuses it) and
    e-mails the merchant after commit. Staff get one alert per day listing every warning."""
    from merchants import tasks

    now = now or timezone.now()
    report, _created = InspectionReport.objects.get_or_create(day=timezone.localdate(now))
    for merchant in list(selectors.merchants_to_inspect(report=report)):
        metrics = selectors.merchant_metrics(merchant=merchant, now=now)
        previous = selectors.previous_prices(merchant=merchant, before=report)
        level, findings = judge(metrics=metrics, previous_prices=previous)
        try:
            with transaction.atomic(durable=True):
                inspection = MerchantInspection.objects.create(
                    report=report,
                    merchant=merchant,
                    level=level,
                    metrics=metrics.as_dict(),
                    findings=findings,
                    prices=metrics.prices,
                )
                if level == MerchantInspection.Level.HARD:
                    inspection.suspended = bool(
                        Merchant.objects.filter(
                            pk=merchant.pk, status=Merchant.Status.ACTIVE
                        ).update(status=Merchant.Status.SUSPENDED)
                    )
                    if inspection.suspended:
                        inspection.save(update_fields=["suspended"])
                        transaction.on_commit(
                            partial(
                                tasks.send_suspension_notice_task.delay,
                                inspection_id=inspection.pk,
                            )
                        )
        except IntegrityError:
            logger.info("merchant %s already inspected for %s", merchant.pk, report.day)
            continue
        if level != MerchantInspection.Level.OK:
            logger.warning("inspection of merchant %s: %s", merchant.pk, level)
    with transaction.atomic(durable=True):
        InspectionReport.objects.filter(pk=report.pk, finished_at__isnull=True).update(
            finished_at=timezone.now()
        )
        if report.inspections.exclude(level=MerchantInspection.Level.OK).exists():
            transaction.on_commit(
                partial(tasks.send_inspection_alert_task.delay, report_id=report.pk)
            )
    report.refresh_from_db()
    return report


def claim_staff_alert(*, report_id: int) -> bool:
    return bool(
        InspectionReport.objects.filter(pk=report_id, staff_alerted_at__isnull=True).update(
            staff_alerted_at=timezone.now()
        )
    )


def release_staff_alert(*, report_id: int) -> None:
    InspectionReport.objects.filter(pk=report_id).update(staff_alerted_at=None)


def claim_suspension_notice(*, inspection_id: int) -> bool:
    return bool(
        MerchantInspection.objects.filter(
            pk=inspection_id, suspended=True, merchant_notified_at__isnull=True
        ).update(merchant_notified_at=timezone.now())
    )


def release_suspension_notice(*, inspection_id: int) -> None:
    MerchantInspection.objects.filter(pk=inspection_id).update(merchant_notified_at=None)


# --- analytics and customers -------------------------------------------------------------------
MAX_TAGS = 10
MAX_TAG_LENGTH = 30
# Product page views: per-day Redis hashes (product id → views), flushed to ProductViewDay.
VIEW_COUNTER_TTL_SECONDS = 4 * 24 * 3600
VIEW_FLUSH_DAYS = 3
VIEW_DAY_CLOSED_AFTER = timedelta(hours=1)
VIEW_REDIS_TIMEOUT = 0.5
_VIEWS_CLIENTS: dict[str, Any] = {}


def _views_key(day: date) -> str:
    from django.core.cache import cache

    return cache.make_key(f"product-views:{day.isoformat()}")


def _views_redis() -> Any:
    """A client of the cache's Redis, or None without one (the embedded demo: local-memory cache
    and SQLite), where views go straight to the database."""
    cache_settings = settings.CACHES["default"]
    if "redis" not in cache_settings["BACKEND"].lower() or connection.vendor != "postgresql":
        return None
    location = cache_settings["LOCATION"]
    client = _VIEWS_CLIENTS.get(location)
    if client is None:
        client = redis.Redis.from_url(
            location, socket_timeout=VIEW_REDIS_TIMEOUT, socket_connect_timeout=VIEW_REDIS_TIMEOUT
        )
        _VIEWS_CLIENTS[location] = client
    return client


def record_product_view(*, product_id: int, merchant_id: int, now: datetime | None = None) -> None:
    """Count one product page view for today (the site's time zone). With Redis (every real
    deployment): one ``HINCRBY`` on the day's hash, no database write; ``flush_product_views``
    copies the day's totals into ``ProductViewDay`` every minute. Without Redis: one
    ``INSERT … ON CONFLICT DO UPDATE views = views + 1``. Fail-safe: an error loses this view,
    never the page."""
    day = timezone.localdate(now or timezone.now(), timezone.get_default_timezone())
    client = _views_redis()
    if client is not None:
        key = _views_key(day)
        try:
            client.pipeline(transaction=False).hincrby(key, str(product_id), 1).expire(
                key, VIEW_COUNTER_TTL_SECONDS
            ).execute()
        except (RedisError, OSError):
            logger.warning("product view not counted", extra={"product_id": product_id})
        return
    table = connection.ops.quote_name(ProductViewDay._meta.db_table)
    sql = (
        f"INSERT INTO {table} (merchant_id, product_id, day, views) VALUES (%s, %s, %s, 1) "  # noqa: S608  # nosec B608
        f"ON CONFLICT (product_id, day) DO UPDATE SET views = {table}.views + 1"
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, [merchant_id, product_id, day])
    except DatabaseError:
        logger.warning("product view not counted", extra={"product_id": product_id})


def flush_product_views(*, now: datetime | None = None) -> int:
    """Copy the Redis view totals of today and the ``VIEW_FLUSH_DAYS - 1`` days before into
    ``ProductViewDay``; returns the rows written. Redis holds each day's running *total* per
    product, and a row takes ``GREATEST(row, total)``: running twice, or at once, writes the same
    numbers (idempotent). A past day's hash is deleted once ``VIEW_DAY_CLOSED_AFTER`` has passed
    since its end and its totals are in; products deleted meanwhile are skipped."""
    client = _views_redis()
    if client is None:
        return 0
    now = now or timezone.now()
    tz = timezone.get_default_timezone()
    today = timezone.localdate(now, tz)
    table = connection.ops.quote_name(ProductViewDay._meta.db_table)
    products = connection.ops.quote_name(Product._meta.db_table)
    sql = (
        f"INSERT INTO {table} (merchant_id, product_id, day, views) "  # noqa: S608  # nosec B608
        f"SELECT p.merchant_id, p.id, %s, v.views "
        f"FROM UNNEST(%s::bigint[], %s::bigint[]) AS v(product_id, views) "
        f"JOIN {products} p ON p.id = v.product_id "
        f"ON CONFLICT (product_id, day) DO UPDATE SET views = EXCLUDED.views "
        f"WHERE {table}.views < EXCLUDED.views"
    )
    written = 0
    for back in range(VIEW_FLUSH_DAYS - 1, -1, -1):
        day = today - timedelta(days=back)
        key = _views_key(day)
        totals = client.hgetall(key)
        if totals:
            ids = [int(product_id) for product_id in totals]
            views = [int(count) for count in totals.values()]
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql, [day, ids, views])
                written += cursor.rowcount
        day_end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
        if day < today and now >= day_end + VIEW_DAY_CLOSED_AFTER:
            client.delete(key)
    return written


def normalise_tags(raw: str) -> list[str]:
    """``"VIP, reseller,,vip"`` → ``["vip", "reseller"]``: lower case, no commas, at most
    ``MAX_TAGS`` of at most ``MAX_TAG_LENGTH`` characters, first spelling wins."""
    tags: list[str] = []
    for part in raw.split(","):
        tag = " ".join(part.split()).lower()[:MAX_TAG_LENGTH]
        if tag and tag not in tags:
            tags.append(tag)
    return tags[:MAX_TAGS]


def forget_erased_customer(*, merchant_id: int, email: str) -> int:
    """Called when a buyer's data is erased from one of the merchant's orders (``email`` is the
    address it had): once no order of this merchant still carries the address, the merchant's
    tags and note on that customer are deleted too, so they neither outlive the erasure nor
    re-attach if the buyer comes back. Returns the notes deleted (0 or 1)."""
    from django.db.models.functions import Lower

    from merchants.customers import customer_key
    from orders.models import Order

    # Lower-cased by the database, as the customer list groups (``customers._named_orders``).
    with connection.cursor() as cursor:
        cursor.execute("SELECT LOWER(%s)", [email])
        buyer = cursor.fetchone()[0]
    still_named = (
        Order.objects.filter(merchant_id=merchant_id, anonymised_at__isnull=True)
        .annotate(buyer=Lower("email"))
        .filter(buyer=buyer)
    )
    if still_named.exists():
        return 0
    key = customer_key(merchant_id=merchant_id, buyer=buyer)
    deleted, _by_model = CustomerNote.objects.filter(
        merchant_id=merchant_id, customer_key=key
    ).delete()
    return deleted


def save_customer_note(
    *, merchant: Merchant, customer_key: str, tags: str, note: str, actor: Any
) -> CustomerNote | None:
    """Set a merchant's tags and private note on one customer (by ``customer_key``; the caller
    checked that the key is one of this merchant's customers). One upsert, no lock; the last
    writer wins. Empty tags and note delete the row and return None."""
    tag_list = normalise_tags(tags)
    note = note.strip()
    if not tag_list and not note:
        CustomerNote.objects.filter(merchant=merchant, customer_key=customer_key).delete()
        return None
    row = CustomerNote(
        merchant=merchant,
        customer_key=customer_key,
        tags=f",{','.join(tag_list)}," if tag_list else "",
        note=note,
        updated_by=actor,
    )
    row.full_clean(validate_unique=False, validate_constraints=False)
    CustomerNote.objects.bulk_create(
        [row],
        update_conflicts=True,
        unique_fields=["merchant", "customer_key"],
        update_fields=["tags", "note", "updated_by", "updated_at"],
    )
    return row
