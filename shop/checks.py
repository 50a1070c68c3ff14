"""System checks: the vault's keyring is validated by ``runserver``, ``migrate`` and
``check --deploy`` (run on every deploy), not at the first purchase."""

from typing import Any

from django.core import checks

from shop import vault
from shop.exceptions import VaultError


@checks.register(checks.Tags.security)
def keyring_is_usable(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        vault.keyring()
    except VaultError as exc:
        # The message names the setting, never a key.
        return [checks.Error(str(exc), id="cardvault.E001")]
    return []
