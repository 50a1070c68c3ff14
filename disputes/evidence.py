"""Screenshots a buyer attaches to a dispute: images only, checked by content (never by the file
name or the browser's content type), size-limited, stored under a random name in a private part of
``MEDIA_ROOT`` that no URL serves; the access-checked views stream them to the parties."""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.utils import timezone
from django.utils.translation import gettext as _

from disputes.exceptions import InvalidDisputeInput

# Under MEDIA_ROOT; a deployment that serves MEDIA_ROOT must never serve this folder.
PRIVATE_PREFIX = "private/disputes"


@dataclass(frozen=True, slots=True)
class ImageKind:
    content_type: str
    extension: str


PNG = ImageKind("image/png", "png")
JPEG = ImageKind("image/jpeg", "jpg")
WEBP = ImageKind("image/webp", "webp")
GIF = ImageKind("image/gif", "gif")
_PIL_FORMATS = {"PNG": PNG, "JPEG": JPEG, "WEBP": WEBP, "GIF": GIF}


def inspect_screenshot(upload: File[bytes]) -> ImageKind:
    """The image type of an upload, or ``InvalidDisputeInput``. Pillow, when installed, parses
    the whole image; otherwise the format's signature and header structure are checked."""
    limit = settings.DISPUTE_SCREENSHOT_MAX_BYTES
    size = upload.size or 0
    if size > limit:
        raise _invalid(
            _("The screenshot is too large (at most %(mb)s MB).") % {"mb": _megabytes(limit)}
        )
    if size == 0:
        raise _invalid(_("The screenshot is empty."))
    upload.seek(0)
    try:
        kind = _inspect_with_pillow(upload)
    except ImportError:
        upload.seek(0)
        kind = _inspect_magic(upload.read(64))
    upload.seek(0)
    if kind is None:
        raise _invalid(_("Attach an image (PNG, JPEG, WebP or GIF)."))
    return kind


def _megabytes(limit: int) -> str:
    return f"{limit / (1024 * 1024):g}"


def _invalid(message: str) -> InvalidDisputeInput:
    return InvalidDisputeInput("bad screenshot", errors={"screenshot": [message]})


def _inspect_with_pillow(stream: IO[bytes]) -> ImageKind | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(stream) as image:
            image.verify()
            return _PIL_FORMATS.get(image.format or "")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    except Image.DecompressionBombError:
        return None


def _inspect_magic(head: bytes) -> ImageKind | None:
    """Signature plus the first structure of each format, so a renamed text file or an HTML page
    that merely starts with a few magic bytes is refused."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        # The first chunk must be a 13-byte IHDR with a non-zero width and height.
        if len(head) >= 24 and head[12:16] == b"IHDR" and struct.unpack(">I", head[8:12])[0] == 13:
            width, height = struct.unpack(">II", head[16:24])
            return PNG if width and height else None
        return None
    if head.startswith(b"\xff\xd8\xff") and len(head) >= 4 and head[3] in range(0xC0, 0x100):
        return JPEG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and head[12:16] in (b"VP8 ", b"VP8L", b"VP8X"):
        return WEBP
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return GIF if width and height else None
    return None


def store_screenshot(upload: File[bytes], kind: ImageKind) -> str:
    """Save the (already inspected) upload under a random name; returns the storage name."""
    now = timezone.now()
    name = f"{PRIVATE_PREFIX}/{now:%Y/%m}/{secrets.token_hex(16)}.{kind.extension}"
    upload.seek(0)
    return default_storage.save(name, upload)


def delete_screenshot(name: str) -> None:
    if name:
        default_storage.delete(name)


def open_screenshot(name: str) -> IO[bytes]:
    return default_storage.open(name, "rb")
