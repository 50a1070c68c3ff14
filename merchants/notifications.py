"""E-mails of admission and inspection: the decision to the applicant (in the language they
applied in), the daily alert to staff, and the suspension notice to the merchant. Each is sent
at most once: a sender claims it first (a conditional update) and releases the claim if sending
fails, so the retried task tries again."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from merchants import selectors, services
from merchants.models import InspectionReport, MerchantApplication, MerchantInspection

METRIC_LABELS = {
    "dispute_rate": _("Dispute rate (disputes per delivered order)"),
    "invalid_key_rate": _("Invalid-key reports per delivered order"),
    "refund_rate": _("Refund rate (refunded orders per paid order)"),
    "sales_spike": _("Orders in the last 24 hours against the daily mean of the 14 days before"),
    "price_change": _("Price change of a product since yesterday's inspection"),
}


def describe(finding: dict[str, object]) -> str:
    label = str(METRIC_LABELS.get(str(finding.get("metric")), finding.get("metric")))
    text = _("%(label)s: %(value)s (limit %(threshold)s)") % {
        "label": label,
        "value": finding.get("value"),
        "threshold": finding.get("threshold"),
    }
    if "product_id" in finding:
        text += " " + str(
            _("product #%(id)s: %(old)s → %(new)s")
            % {
                "id": finding["product_id"],
                "old": finding["old_price"],
                "new": finding["new_price"],
            }
        )
    return str(text)


def send_application_decision(*, application_id: int) -> bool:
    application = MerchantApplication.objects.select_related("user").get(pk=application_id)
    email = application.user.email
    if not email or not services.claim_applicant_notice(application_id=application.pk):
        return False
    approved = application.status == MerchantApplication.Status.APPROVED
    name = "application_approved" if approved else "application_rejected"
    context = {
        "application": application,
        "login_url": f"{settings.SITE_URL}/merchant/",
    }
    try:
        with translation.override(application.language):
            subject = render_to_string(f"merchants/email/{name}_subject.txt", context).strip()
            text = render_to_string(f"merchants/email/{name}.txt", context)
        send_mail(subject, text, None, [email])
    except Exception:
        services.release_applicant_notice(application_id=application.pk)
        raise
    return True


def send_inspection_alert(*, report_id: int) -> bool:
    """One e-mail to every active staff user listing the day's warnings and suspensions."""
    report = InspectionReport.objects.get(pk=report_id)
    flagged = list(
        report.inspections.exclude(level=MerchantInspection.Level.OK)
        .select_related("merchant")
        .order_by("merchant__name")
    )
    recipients = list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not flagged or not recipients or not services.claim_staff_alert(report_id=report.pk):
        return False
    rows = [
        {
            "inspection": inspection,
            "findings": [describe(finding) for finding in inspection.findings],
        }
        for inspection in flagged
    ]
    context = {"report": report, "rows": rows, "site_url": settings.SITE_URL}
    try:
        subject = render_to_string("merchants/email/inspection_alert_subject.txt", context).strip()
        text = render_to_string("merchants/email/inspection_alert.txt", context)
        send_mail(subject, text, None, recipients)
    except Exception:
        services.release_staff_alert(report_id=report.pk)
        raise
    return True


def send_suspension_notice(*, inspection_id: int) -> bool:
    inspection = MerchantInspection.objects.select_related("merchant__owner", "report").get(
        pk=inspection_id
    )
    email = inspection.merchant.owner.email
    if not email or not services.claim_suspension_notice(inspection_id=inspection.pk):
        return False
    try:
        with translation.override(selectors.merchant_language(merchant=inspection.merchant)):
            context = {
                "inspection": inspection,
                "merchant": inspection.merchant,
                "findings": [
                    describe(finding)
                    for finding in inspection.findings
                    if finding.get("level") == MerchantInspection.Level.HARD
                ],
            }
            subject = render_to_string("merchants/email/suspended_subject.txt", context).strip()
            text = render_to_string("merchants/email/suspended.txt", context)
        send_mail(subject, text, None, [email])
    except Exception:
        services.release_suspension_notice(inspection_id=inspection.pk)
        raise
    return True
