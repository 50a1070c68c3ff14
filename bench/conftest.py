# The benchmarks share the suite's database set-up and cache hygiene.
from tests.conftest import (  # noqa: F401
    _clear_cache,
    django_db_modify_db_settings,
    django_db_setup,
)
