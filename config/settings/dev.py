"""Local development and `make demo`: base settings with nothing added.

Kept as its own module so `manage.py` has a stable default and development-only tweaks have a home.
"""

from .base import *  # noqa: F403
