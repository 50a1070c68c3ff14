"""A demo platform: a staff user, two merchants with products and keys, and their growth tools
(coupons, wholesale tiers, an affiliate programme with a demo affiliate, a resale listing, paid
and delivered orders with reviews; ``_demo_growth``). Idempotent: running it again keeps what
exists and prints the logins."""

import secrets
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from merchants.management.commands._demo_growth import GrowthSummary, seed_growth
from merchants.models import Merchant, MerchantMembership
from shop import services
from shop.models import CardKey, Category, ImportBatch, Product

DEMO_PASSWORD_FILE = ".demo-passwords"  # noqa: S105 - a file name, untracked


class Command(BaseCommand):
    help = "Seed a demo platform and print its logins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--keys", type=int, default=50, help="keys per auto product")

    def handle(self, *args: Any, keys: int, **options: Any) -> None:
        User = get_user_model()
        logins: list[tuple[str, str, str]] = []
        with transaction.atomic():
            staff, created = User.objects.get_or_create(
                username="staff",
                defaults={"is_staff": True, "is_superuser": True, "email": "staff@example.com"},
            )
            logins.append(("staff (/admin/)", "staff", self._password(staff, created)))
            stores = [
                (
                    "nebula-keys",
                    "Nebula Keys",
                    "alice",
                    "Game keys and gift cards, delivered in seconds.",
                ),
                ("panda-soft", "熊猫软件", "bob", "正版软件激活码，自动发货。"),
            ]
            merchants = []
            for slug, name, username, announcement in stores:
                user, created = User.objects.get_or_create(
                    username=username, defaults={"email": f"{username}@example.com"}
                )
                logins.append(
                    (f"merchant {name} (/merchant/)", username, self._password(user, created))
                )
                merchant, _ = Merchant.objects.get_or_create(
                    slug=slug,
                    defaults={
                        "name": name,
                        "owner": user,
                        "status": Merchant.Status.ACTIVE,
                        "announcement": announcement,
                        "contact": f"support@{slug}.example",
                    },
                )
                MerchantMembership.objects.get_or_create(
                    user=user,
                    defaults={"merchant": merchant, "role": MerchantMembership.Role.OWNER},
                )
                merchants.append(merchant)
        self._catalogue(merchants[0], merchants[1], keys)
        growth = seed_growth(
            stores={"nebula": merchants[0], "panda": merchants[1]},
            remember_password=self._password,
        )
        logins.append(
            (
                "affiliate (/affiliates/login/)",
                growth.affiliate.user.username,
                growth.affiliate_password,
            )
        )
        self.stdout.write(self.style.SUCCESS("Demo platform ready at http://127.0.0.1:8000"))
        for role, username, password in logins:
            self.stdout.write(f"  {role}: {username} / {password}")
        self._growth_summary(growth)
        self.stdout.write(
            "  Staff must use two-factor authentication: the first sign-in at /admin/ shows a QR"
            " code (and its secret) to scan with an authenticator app, then asks for a code."
        )

    def _growth_summary(self, growth: GrowthSummary) -> None:
        for coupon in growth.coupons:
            off = (
                f"{coupon.value.normalize():f}% off"
                if coupon.kind == coupon.Kind.PERCENT
                else f"{coupon.value} {coupon.currency} off"
            )
            if coupon.min_order_amount is not None:
                off += f" from {coupon.min_order_amount} {coupon.currency}"
            self.stdout.write(f"  coupon {coupon.code} ({coupon.merchant.name}): {off}")
        self.stdout.write(
            "  wholesale prices: /s/nebula-keys/p/stellar-odyssey/ (from 3 and from 5 keys)"
        )
        self.stdout.write(
            f"  affiliate link: http://127.0.0.1:8000/s/nebula-keys/?ref={growth.affiliate.code}"
        )
        listing = growth.listing
        self.stdout.write(
            f"  resold: {listing.offer.product.title} in {listing.merchant.name}"
            f" at {listing.price} (floor {listing.offer.floor_price})"
        )
        self.stdout.write(
            f"  demo orders: {growth.orders_delivered} delivered ({growth.orders_placed} new),"
            f" {growth.reviews} reviewed; analytics and customers under /merchant/"
        )
        for warning in growth.warnings:
            self.stdout.write(self.style.WARNING(f"  {warning}"))

    def _password(self, user: Any, created: bool, password: str | None = None) -> str:
        # Fresh random passwords on first seed, remembered in an untracked file for reruns;
        # ``password``: the one the user was just created with.
        from pathlib import Path

        store = Path(DEMO_PASSWORD_FILE)
        known = dict(
            line.split(":", 1)
            for line in (store.read_text().splitlines() if store.exists() else [])
        )
        if created or user.username not in known:
            if password is None:
                password = secrets.token_urlsafe(9)
                user.set_password(password)
                user.save(update_fields=["password"])
            known[user.username] = password
            store.write_text("".join(f"{k}:{v}\n" for k, v in known.items()))
            store.chmod(0o600)
        return known[user.username]

    def _catalogue(self, nebula: Merchant, panda: Merchant, keys: int) -> None:
        games, _ = Category.objects.get_or_create(merchant=nebula, name="Game keys")
        cards, _ = Category.objects.get_or_create(merchant=nebula, name="Gift cards")
        stellar = self._product(
            nebula,
            "stellar-odyssey",
            "Stellar Odyssey — Steam key",
            Decimal("59.00"),
            games,
            how_to_use="Steam → Games → Activate a product on Steam, then paste the key.",
            variant_label="Standard",
        )
        self._product(
            nebula,
            "stellar-odyssey-deluxe",
            "Stellar Odyssey — Steam key",
            Decimal("99.00"),
            games,
            variant_of=stellar,
            variant_label="Deluxe",
        )
        self._product(nebula, "gift-card-100", "Gift card ¥100", Decimal("95.00"), cards)
        self._product(
            nebula,
            "vpn-shared",
            "Shared VPN account (monthly)",
            Decimal("5.00"),
            None,
            delivery_mode=Product.DeliveryMode.REUSABLE,
            reusable_cap=100,
        )
        self._product(
            nebula,
            "top-up",
            "Game top-up (manual)",
            Decimal("30.00"),
            games,
            delivery_mode=Product.DeliveryMode.MANUAL,
            manual_fields=[
                {
                    "name": "account_id",
                    "label": "Game account ID",
                    "pattern": "^[0-9]{5,12}$",
                    "required": True,
                }
            ],
        )
        office, _ = Category.objects.get_or_create(merchant=panda, name="办公软件")
        month = self._product(
            panda,
            "office-suite",
            "办公套件激活码",
            Decimal("29.90"),
            office,
            variant_label="1 个月",
        )
        self._product(
            panda,
            "office-suite-year",
            "办公套件激活码",
            Decimal("199.00"),
            office,
            variant_of=month,
            variant_label="12 个月",
        )
        for product in Product.objects.filter(merchant__in=[nebula, panda]):
            if product.delivery_mode == Product.DeliveryMode.MANUAL:
                continue
            if CardKey.objects.filter(product=product).exists():
                continue
            count = 1 if product.delivery_mode == Product.DeliveryMode.REUSABLE else keys
            lines = [
                f"{product.slug[:6].upper()}-{secrets.token_hex(4).upper()}-{secrets.token_hex(4).upper()}"
                for _ in range(count)
            ]
            if product.delivery_mode == Product.DeliveryMode.REUSABLE:
                lines = [
                    f"user: demo-{secrets.token_hex(3)} / password: {secrets.token_urlsafe(8)}"
                ]
            services.import_keys(
                product=product,
                lines=lines,
                source=ImportBatch.Source.COMMAND,
                file_name="seed_demo",
            )

    def _product(
        self,
        merchant: Merchant,
        slug: str,
        title: str,
        price: Decimal,
        category: Category | None,
        **extra: Any,
    ) -> Product:
        product, _ = Product.objects.get_or_create(
            merchant=merchant,
            slug=slug,
            defaults={
                "title": title,
                "price": price,
                "category": category,
                "description": f"{title}. Delivered instantly after payment.",
                **extra,
            },
        )
        return product
