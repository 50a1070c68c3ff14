"""A demo platform: a staff user, two merchants with products and keys. Idempotent: running it
again keeps what exists and prints the logins."""

import secrets
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

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
        self.stdout.write(self.style.SUCCESS("Demo platform ready at http://127.0.0.1:8000"))
        for role, username, password in logins:
            self.stdout.write(f"  {role}: {username} / {password}")
        self.stdout.write(
            "  Staff must use two-factor authentication: the first sign-in at /admin/ shows a QR"
            " code (and its secret) to scan with an authenticator app, then asks for a code."
        )

    def _password(self, user: Any, created: bool) -> str:
        # Fresh random passwords on first seed, remembered in an untracked file for reruns.
        from pathlib import Path

        store = Path(DEMO_PASSWORD_FILE)
        known = dict(
            line.split(":", 1)
            for line in (store.read_text().splitlines() if store.exists() else [])
        )
        if created or user.username not in known:
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
