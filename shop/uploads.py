"""Checking and serving files users upload (dispute screenshots, key files, ...).

``validate_upload`` decides what a file is from its content (magic bytes; never the name or the
browser's Content-Type), enforces a size limit and returns the validated kind; ``upload_response``
serves stored bytes with the Content-Type of that kind, ``nosniff``, and as an attachment unless
it is an image, so an upload can never be served as HTML or script from our origin.
"""

import io
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpResponse
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class UploadKind:
    name: str
    content_type: str
    extension: str
    is_image: bool


PNG = UploadKind("png", "image/png", "png", True)
JPEG = UploadKind("jpeg", "image/jpeg", "jpg", True)
GIF = UploadKind("gif", "image/gif", "gif", True)
WEBP = UploadKind("webp", "image/webp", "webp", True)
PDF = UploadKind("pdf", "application/pdf", "pdf", False)
TEXT = UploadKind("text", "text/plain; charset=utf-8", "txt", False)

IMAGES = (PNG, JPEG, GIF, WEBP)
TEXT_SNIFF_BYTES = 64 * 1024


def sniff(head: bytes) -> UploadKind | None:
    """The kind the leading bytes prove, or None. Text is UTF-8 without NUL bytes or markup
    that a browser could take for HTML."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return WEBP
    if head.startswith(b"%PDF-"):
        return PDF
    if b"\x00" in head:
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the sniff boundary is still text.
        if len(head) < TEXT_SNIFF_BYTES or exc.start < len(head) - 3:
            return None
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype", b"<html", b"<script", b"<svg", b"<?xml")):
        return None
    return TEXT


def largest_upload_bytes() -> int:
    """The most any form accepts for one file: the largest of the upload limits."""
    return max(
        settings.UPLOAD_MAX_BYTES,
        settings.KEY_IMPORT_MAX_BYTES,
        settings.MERCHANT_DOCUMENT_MAX_BYTES,
        settings.DISPUTE_SCREENSHOT_MAX_BYTES,
    )


class OversizeUpload(UploadedFile):
    """Stands in for a file larger than any form accepts: its name, type and real size, no
    content. ``validate_upload`` refuses it as too large, with the form's own message."""

    def __init__(self, *, name: str, content_type: str, size: int, charset: str | None) -> None:
        super().__init__(io.BytesIO(b""), name, content_type, size, charset)


class UploadCapHandler(FileUploadHandler):
    """The first of ``FILE_UPLOAD_HANDLERS``: Django parses a multipart body (for any POST, as
    the CSRF check reads the form) and writes each file to memory or a temporary file before a
    view sees it, so a multi-gigabyte "screenshot" from an anonymous buyer used to fill the disk
    before its form said it was too large. Past ``largest_upload_bytes()`` the rest of a file
    is read and dropped, not passed on to the handlers that store it, and the form gets an
    ``OversizeUpload`` of the real size: at most that many bytes are kept per file."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0
        self.limit = largest_upload_bytes()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        return raw_data if self.received <= self.limit else None

    def file_complete(self, file_size: int) -> UploadedFile | None:
        if self.received <= self.limit:
            return None  # the next handler's stored file
        return OversizeUpload(
            name=self.file_name or "",
            content_type=self.content_type or "",
            size=self.received,
            charset=self.charset,
        )


def validate_upload(
    upload: UploadedFile,
    *,
    allowed: tuple[UploadKind, ...] = IMAGES,
    max_bytes: int | None = None,
) -> UploadKind:
    """The upload's kind, proven by its content. Raises ``ValidationError`` (translated) if it is
    empty, larger than ``max_bytes`` (default ``UPLOAD_MAX_BYTES``) or not one of ``allowed``."""
    limit = max_bytes if max_bytes is not None else settings.UPLOAD_MAX_BYTES
    size = upload.size or 0
    if size == 0:
        raise ValidationError(_("The file is empty."), code="empty")
    if size > limit:
        raise ValidationError(
            _("The file is too large (at most %(mb).1f MB).") % {"mb": limit / (1024 * 1024)},
            code="too_large",
        )
    upload.seek(0)
    head = upload.read(TEXT_SNIFF_BYTES)
    upload.seek(0)
    kind = sniff(head)
    if kind is None or kind not in allowed:
        raise ValidationError(
            _("This type of file is not accepted. Allowed: %(kinds)s.")
            % {"kinds": ", ".join(k.extension for k in allowed)},
            code="bad_type",
        )
    return kind


def upload_response(content: bytes, *, kind: UploadKind, file_name: str) -> HttpResponse:
    """Serve validated upload bytes: the validated kind's Content-Type, never sniffed, and a
    download (``attachment``) unless it is an image."""
    response = HttpResponse(content, content_type=kind.content_type)
    response["X-Content-Type-Options"] = "nosniff"
    safe_name = "".join(c for c in file_name if c.isalnum() or c in "-_.")[:100] or "file"
    if not safe_name.endswith(f".{kind.extension}"):
        safe_name = f"{safe_name}.{kind.extension}"
    disposition = "inline" if kind.is_image else "attachment"
    response["Content-Disposition"] = f'{disposition}; filename="{safe_name}"'
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response
