"""Affiliate e-mails: staff's decision on an affiliate's withdrawal (paid with its payout
reference, or rejected with the note), text with an HTML alternative, in the language the
affiliate used when requesting it, else the site default.

Sent after commit by ``webhooks.tasks.send_affiliate_notice_task``, at most once per decision:
an ``AffiliateNotice`` row keyed by the withdrawal is claimed with a conditional update before
sending and released when sending fails, so the task's retry sends it."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from affiliates.models import Affiliate, AffiliateWithdrawal
from webhooks.models import AffiliateNotice

NOTICE_LEASE = timedelta(minutes=10)
WITHDRAWAL_DECIDED = "withdrawal_decided"
TEMPLATE = "affiliates/email/withdrawal_decided"


def _supported(language: str) -> str:
    try:
        return translation.get_supported_language_variant(language) if language else ""
    except LookupError:
        return ""


def remember_request_language(*, withdrawal: AffiliateWithdrawal) -> None:
    """Inside the request's transaction: note the language the affiliate is using now (the
    active one in a request), for the e-mail about staff's decision later."""
    AffiliateNotice.objects.get_or_create(
        kind=WITHDRAWAL_DECIDED,
        object_key=str(withdrawal.pk),
        defaults={
            "affiliate_id": withdrawal.affiliate_id,
            "language": _supported(translation.get_language() or ""),
        },
    )


def queue_withdrawal_decided_after_commit(*, withdrawal_id: int) -> None:
    """Inside the decision's transaction: e-mail the affiliate once it commits."""
    from webhooks import tasks

    transaction.on_commit(
        partial(
            tasks.send_affiliate_notice_task.delay,
            kind=WITHDRAWAL_DECIDED,
            object_id=withdrawal_id,
        )
    )


def render_withdrawal_decided(
    *, withdrawal: AffiliateWithdrawal, language: str
) -> tuple[str, str, str]:
    """Subject, text and HTML of the decision e-mail, in ``language`` (or the site default)."""
    context = {
        "withdrawal": withdrawal,
        "paid": withdrawal.status == AffiliateWithdrawal.Status.PAID,
        "dashboard_url": settings.SITE_URL + reverse("affiliates:dashboard"),
    }
    with translation.override(_supported(language) or settings.LANGUAGE_CODE):
        subject = " ".join(render_to_string(f"{TEMPLATE}_subject.txt", context).split())
        text = render_to_string(f"{TEMPLATE}.txt", context)
        html = render_to_string(f"{TEMPLATE}.html", context)
    return subject, text, html


def _claim(*, affiliate: Affiliate, object_key: str) -> AffiliateNotice | None:
    now = timezone.now()
    notice, _created = AffiliateNotice.objects.get_or_create(
        kind=WITHDRAWAL_DECIDED, object_key=object_key, defaults={"affiliate": affiliate}
    )
    claimed = (
        AffiliateNotice.objects.filter(pk=notice.pk, sent_at__isnull=True)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - NOTICE_LEASE))
        .update(claimed_at=now)
    )
    return notice if claimed else None


def send_withdrawal_decided(*, withdrawal_id: int) -> bool:
    """E-mail the affiliate staff's decision on a withdrawal, at most once. False when the
    withdrawal is still undecided, the affiliate has no e-mail address, or it was sent already.
    Raises what the mail backend raises, after releasing the claim, for a retry."""
    withdrawal = AffiliateWithdrawal.objects.select_related("affiliate__user").get(pk=withdrawal_id)
    if withdrawal.status == AffiliateWithdrawal.Status.REQUESTED:
        return False
    email = withdrawal.affiliate.user.email
    if not email:
        return False
    notice = _claim(affiliate=withdrawal.affiliate, object_key=str(withdrawal.pk))
    if notice is None:
        return False
    try:
        subject, text, html = render_withdrawal_decided(
            withdrawal=withdrawal, language=notice.language
        )
        message = EmailMultiAlternatives(subject, text, None, [email])
        message.attach_alternative(html, "text/html")
        message.send()
    except Exception:
        AffiliateNotice.objects.filter(pk=notice.pk).update(claimed_at=None)
        raise
    AffiliateNotice.objects.filter(pk=notice.pk).update(sent_at=timezone.now())
    return True
