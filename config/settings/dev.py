"""Local development and `make demo`: base settings with nothing added.

Kept as its own module so `manage.py` has a stable default and development-only tweaks have a home.
"""

import warnings

from .base import *  # noqa: F403

# whitenoise warns that collectstatic has not run; in development it serves from the finders.
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
