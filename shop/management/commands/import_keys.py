from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shop import services
from shop.exceptions import CardvaultError
from shop.models import ImportBatch, Product


class Command(BaseCommand):
    help = "Import card keys (one per line, .txt or .csv) into a product, as one import batch."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("product", help="Product id, or merchant-slug/product-slug")
        parser.add_argument("file", type=Path)

    def handle(self, *args: Any, product: str, file: Path, **options: Any) -> None:
        target = self._product(product)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}") from None
        try:
            result = services.import_keys(
                product=target,
                lines=services.read_key_lines(data, file_name=file.name),
                source=ImportBatch.Source.COMMAND,
                file_name=file.name,
            )
        except CardvaultError as exc:
            raise CommandError(f"{exc.user_message} ({exc})") from None
        self.stdout.write(
            f"batch {result.batch.pk}: imported {result.imported}, "
            f"duplicate {result.duplicates}, rejected {result.rejected}"
        )
        if result.rejected_lines:
            lines = ", ".join(str(n) for n in result.rejected_lines[:100])
            self.stdout.write(f"rejected (too long) at lines: {lines}")

    def _product(self, ref: str) -> Product:
        queryset = Product.objects.select_related("merchant")
        if ref.isdigit():
            found = queryset.filter(pk=int(ref)).first()
        elif "/" in ref:
            merchant_slug, product_slug = ref.split("/", 1)
            found = queryset.filter(merchant__slug=merchant_slug, slug=product_slug).first()
        else:
            matches = list(queryset.filter(slug=ref)[:2])
            if len(matches) > 1:
                raise CommandError(f"Several stores have a product {ref!r}: use merchant/product.")
            found = matches[0] if matches else None
        if found is None:
            raise CommandError(f"No product {ref!r}.")
        return found
