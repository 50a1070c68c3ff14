"""Simplified Chinese ships complete: browsers get it from Accept-Language or the switcher, orders
remember it for their email, and the catalogue has no untranslated, fuzzy or stale entries."""

from __future__ import annotations

import ast
import gettext
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import translation

from orders import selectors
from orders.models import Order, Payment
from orders.notifications import send_order_receipt
from tests.conftest import open_payment, place
from tests.factories import MerchantFactory, ProductFactory, add_keys
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}
EN = {"HTTP_ACCEPT_LANGUAGE": "en"}
CATALOGUE_DIR = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\{\w*\}")


def html_lang(response) -> str:
    match = re.search(r'<html lang="([^"]+)"', response.content.decode())
    assert match, "base.html sets <html lang>"
    return match.group(1)


@pytest.fixture
def stocked(merchant):
    product = ProductFactory(merchant=merchant, title="Steam Wallet 100")
    add_keys(product, 3)
    return product


# --- (a) Accept-Language -------------------------------------------------------------------------
def test_chinese_browser_gets_chinese_home_and_storefront(stocked):
    client = Client(**ZH)
    home = client.get(reverse("shop:home"))
    assert home.status_code == 200
    assert html_lang(home) == "zh-hans"
    page = home.content.decode()
    assert "<h1>店铺</h1>" in page
    assert "查询订单" in page  # header link
    assert "Find my order" not in page

    store = client.get(reverse("shop:store", args=[stocked.merchant.slug]))
    assert store.status_code == 200
    assert html_lang(store) == "zh-hans"
    text = store.content.decode()
    assert "剩余 3 件" in text
    assert "其他商品" in text
    assert "3 left" not in text

    product = client.get(reverse("shop:product", args=[stocked.merchant.slug, stocked.slug]))
    text = product.content.decode()
    assert "立即购买" in text
    assert "查询密码（可选）" in text
    assert "沙箱（测试支付）" in text  # lazily translated gateway name


@pytest.mark.parametrize("header", ["zh-Hans", "zh", "zh-SG,en;q=0.5"])
def test_other_chinese_tags_also_pick_simplified_chinese(header, merchant):
    response = Client(HTTP_ACCEPT_LANGUAGE=header).get(reverse("shop:home"))
    assert html_lang(response) == "zh-hans"


def test_english_browser_gets_english(stocked):
    client = Client(**EN)
    home = client.get(reverse("shop:home"))
    assert html_lang(home) == "en"
    assert "<h1>Stores</h1>" in home.content.decode()
    store = client.get(reverse("shop:store", args=[stocked.merchant.slug]))
    text = store.content.decode()
    assert "3 left" in text
    assert "剩余" not in text


def test_no_accept_language_falls_back_to_english(merchant):
    response = Client().get(reverse("shop:home"))
    assert html_lang(response) == "en"


# --- (b) the switcher ----------------------------------------------------------------------------
def test_switcher_offers_both_languages(merchant):
    page = Client(**EN).get(reverse("shop:home")).content.decode()
    assert f'action="{reverse("set_language")}"' in page
    assert 'name="language" value="zh-hans"' in page
    assert 'name="language" value="en"' in page
    assert "简体中文" in page  # each language offered in its own name


def test_switcher_overrides_accept_language_both_ways(merchant):
    client = Client(**EN)
    home = reverse("shop:home")
    response = client.post(reverse("set_language"), {"language": "zh-hans", "next": home})
    assert response.status_code == 302
    assert response["Location"] == home
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    page = client.get(home)
    assert html_lang(page) == "zh-hans"
    assert "<h1>店铺</h1>" in page.content.decode()

    client.defaults.update(ZH)
    client.post(reverse("set_language"), {"language": "en", "next": home})
    page = client.get(home)
    assert html_lang(page) == "en"
    assert "<h1>Stores</h1>" in page.content.decode()


def test_switcher_ignores_an_offsite_next(merchant):
    client = Client(**EN)
    response = client.post(
        reverse("set_language"), {"language": "zh-hans", "next": "https://evil.example/"}
    )
    assert response.status_code == 302
    assert "evil.example" not in response["Location"]


# --- (c) the catalogue ---------------------------------------------------------------------------
@dataclass
class Entry:
    msgctxt: str | None = None
    msgid: str = ""
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)

    @property
    def translated(self) -> bool:
        return bool(self.msgstr) and all(self.msgstr.values())


def parse_po(path: Path) -> list[Entry]:
    """Enough of the PO format for Django's catalogues: one entry per blank-line separated
    block, with flags, context, plurals and continued strings; obsolete (#~) entries are
    skipped. The header (empty msgid) comes first."""
    keyword = re.compile(r'^(msgctxt|msgid_plural|msgid|msgstr)(?:\[(\d+)\])?\s+(".*")$')
    entries: list[Entry] = []
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8").strip()):
        lines = [line.strip() for line in block.splitlines()]
        if all(line.startswith("#~") or not line for line in lines):
            continue
        entry = Entry()
        target: tuple[str, int] | None = None
        for line in lines:
            if line.startswith("#,"):
                entry.flags.update(flag.strip() for flag in line[2:].split(","))
                continue
            if line.startswith("#"):
                continue
            match = keyword.match(line)
            if match:
                name, index, quoted = match.groups()
                target = (name, int(index or 0))
            elif line.startswith('"') and target is not None:
                quoted = line
            else:
                raise AssertionError(f"{path}: cannot parse {line!r}")
            value = ast.literal_eval(quoted)
            name, index = target
            if name == "msgstr":
                entry.msgstr[index] = entry.msgstr.get(index, "") + value
            elif name == "msgctxt":
                entry.msgctxt = (entry.msgctxt or "") + value
            elif name == "msgid_plural":
                entry.msgid_plural = (entry.msgid_plural or "") + value
            else:
                entry.msgid += value
        entries.append(entry)
    return entries


@pytest.fixture(scope="module")
def zh_entries() -> list[Entry]:
    entries = parse_po(CATALOGUE_DIR / "django.po")
    assert entries[0].msgid == "", "the catalogue starts with its header"
    return entries


def test_catalogue_header_is_final_and_has_chinese_plural_rule(zh_entries):
    header = zh_entries[0]
    assert "fuzzy" not in header.flags, "a fuzzy header is dropped by msgfmt, plural rule and all"
    assert "Plural-Forms: nplurals=1; plural=0;" in header.msgstr[0]
    assert "charset=UTF-8" in header.msgstr[0]


def test_zh_hans_catalogue_is_complete(zh_entries):
    messages = zh_entries[1:]
    assert len(messages) > 200, "makemessages found the project's strings"
    untranslated = [e.msgid for e in messages if not e.translated]
    fuzzy = [e.msgid for e in messages if "fuzzy" in e.flags]
    assert untranslated == []
    assert fuzzy == []
    for entry in messages:
        if entry.msgid_plural is not None:
            assert set(entry.msgstr) == {0}, f"one plural form in Chinese: {entry.msgid!r}"


def test_translations_keep_their_placeholders(zh_entries):
    for entry in zh_entries[1:]:
        wanted = sorted(PLACEHOLDER.findall(entry.msgid))
        for text in entry.msgstr.values():
            assert sorted(PLACEHOLDER.findall(text)) == wanted, entry.msgid


def test_compiled_catalogue_is_not_stale(zh_entries):
    """The .mo must say exactly what the .po says. Compared by content, not mtime: a git
    checkout gives both files arbitrary modification times."""
    mo_path = CATALOGUE_DIR / "django.mo"
    assert mo_path.exists(), "run `make messages` and commit the .mo"
    with mo_path.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    for entry in zh_entries[1:]:
        key = entry.msgid if entry.msgctxt is None else f"{entry.msgctxt}\x04{entry.msgid}"
        if entry.msgid_plural is None:
            assert compiled._catalog.get(key) == entry.msgstr[0], entry.msgid  # type: ignore[attr-defined]
        else:
            assert compiled._catalog.get((key, 0)) == entry.msgstr[0], entry.msgid  # type: ignore[attr-defined]
    assert compiled.ngettext("%(n)s left", "%(n)s left", 5) == "剩余 %(n)s 件"


def test_django_serves_the_catalogue():
    with translation.override("zh-hans"):
        assert translation.gettext("Find my order") == "查询订单"
        assert translation.pgettext("price", "from") == "低至"
        assert str(Order.Status.DELIVERED.label) == "已发货"


# --- (d) orders and their email ------------------------------------------------------------------
def checkout_in_chinese(product) -> tuple[Client, Order]:
    client = Client(**ZH)
    response = client.post(
        reverse("shop:product", args=[product.merchant.slug, product.slug]),
        {
            "option": product.pk,
            "quantity": 1,
            "email": "zh-buyer@example.com",
            "query_password": "",
            "gateway": "sandbox",
        },
    )
    assert response.status_code == 302, response.content.decode()
    order = Order.objects.get(email="zh-buyer@example.com")
    return client, order


def test_checkout_records_the_buyers_language(stocked):
    _, order = checkout_in_chinese(stocked)
    assert order.language == "zh-hans"


def test_pending_and_delivered_order_pages_render_in_chinese(
    stocked, django_capture_on_commit_callbacks
):
    client, order = checkout_in_chinese(stocked)
    url = selectors.order_page_path(order)
    pending = client.get(url).content.decode()
    assert f"订单 {order.number}" in pending
    assert "待支付" in pending
    assert "立即支付" in pending
    assert "Pay now" not in pending

    with django_capture_on_commit_callbacks(execute=True):
        pay(Payment.objects.get(order=order))
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    delivered = client.get(url)
    assert html_lang(delivered) == "zh-hans"
    text = delivered.content.decode()
    assert "已发货" in text
    assert "您的卡密" in text
    assert "复制" in text
    assert "下单时间" in text
    assert "Your keys" not in text


def test_receipt_for_a_chinese_order_is_chinese_whatever_language_is_active(
    stocked, django_capture_on_commit_callbacks
):
    """The callback that triggers the receipt comes from a gateway with no Accept-Language; the
    receipt still follows the order's language."""
    _, order = checkout_in_chinese(stocked)
    with django_capture_on_commit_callbacks(execute=True):
        pay(Payment.objects.get(order=order))
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == f"您的订单 {order.number} 已发货"
    assert "感谢您在" in message.body
    assert "请妥善保管此链接" in message.body
    assert selectors.order_page_url(order) in message.body
    html = message.alternatives[0][0]
    assert "打开订单页面查看您的卡密" in html
    assert "Thank you" not in message.body + html


def test_receipt_for_an_english_order_stays_english_under_a_chinese_request(
    stocked, django_capture_on_commit_callbacks
):
    order = place(stocked, email="en-buyer@example.com", language="en").order
    with translation.override("zh-hans"), django_capture_on_commit_callbacks(execute=True):
        pay(open_payment(order))
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == f"Your order {order.number} is ready"
    assert "Thank you for your order" in mail.outbox[0].body
    assert send_order_receipt(order_id=order.pk) is False


def test_store_and_order_pages_of_a_second_merchant_share_the_language(db):
    """The language is the visitor's, not the shop's: any store renders in it."""
    other = ProductFactory(merchant=MerchantFactory(), title="Other")
    add_keys(other, 1)
    page = Client(**ZH).get(reverse("shop:store", args=[other.merchant.slug]))
    assert "剩余 1 件" in page.content.decode()
