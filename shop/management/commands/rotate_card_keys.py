from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from shop import services, vault


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored card key, manual delivery and gateway credential under the "
        "first key of "
        "CARD_KEYRING, in batches. Safe to interrupt and run again: it resumes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        current = vault.keyring().current_id
        count = services.rotate_card_keys(batch_size=batch_size)
        self.stdout.write(f"re-encrypted {count} rows under key {current!r}")
