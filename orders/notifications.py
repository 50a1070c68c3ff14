"""Emails about orders, rendered in the buyer's language. They carry the order link, never the
keys themselves: mail is stored in plaintext on every server it passes, the link is not useful
without the buyer's inbox."""

from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.utils import translation

from orders import selectors, services
from orders.models import Order


def send_order_receipt(*, order_id: int) -> bool:
    """Send the receipt once; a retry after success sends nothing."""
    order = Order.objects.select_related("product", "merchant").get(pk=order_id)
    if order.receipt_sent_at is not None or order.status != Order.Status.DELIVERED:
        return False
    context = {"order": order, "order_url": selectors.order_page_url(order)}
    with translation.override(order.language):
        subject = render_to_string("orders/email/receipt_subject.txt", context).strip()
        text = render_to_string("orders/email/receipt.txt", context)
        html = render_to_string("orders/email/receipt.html", context)
    send_mail(subject, text, None, [order.email], html_message=html)
    services.mark_receipt_sent(order_id=order.pk)
    return True


def notify_merchant_order_paid(*, order_id: int) -> bool:
    order = Order.objects.select_related("product", "merchant__owner").get(pk=order_id)
    owner_email = order.merchant.owner.email
    if not owner_email:
        return False
    context = {"order": order}
    subject = render_to_string("orders/email/merchant_manual_subject.txt", context).strip()
    text = render_to_string("orders/email/merchant_manual.txt", context)
    send_mail(subject, text, None, [owner_email])
    return True
