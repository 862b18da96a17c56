"""Image uploads: checked by their first bytes, stored under a random name.

The type is read from the file's magic bytes, never from its name or the
Content-Type the browser sent: PNG, JPEG, GIF and WebP are accepted, and
nothing else (SVG, which may carry scripts, included). A stored image's
name is 32 random hex digits plus the extension of its real type, so its
URL never changes meaning and may be cached for ever.
"""

from __future__ import annotations

import os
import secrets
import shutil

from corofw import Coro, HTTPError, run_in_thread
from corofw.web import UploadFile

#: How long browsers and proxies may keep a stored image (names never change).
IMAGE_CACHE_CONTROL = "public, max-age=31536000, immutable"


def sniff_image(head: bytes) -> str | None:
    """The extension of the image type ``head`` (a file's first 12 bytes
    or more) starts, or None when it is not an accepted image."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _megabytes(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB"


def check_image(upload: UploadFile, max_bytes: int) -> str:
    """The extension to store ``upload`` with; an ``HTTPError`` saying
    what is wrong when it is too large (413) or not an image (415)."""
    if upload.size > max_bytes:
        raise HTTPError(413, f"The image is too large ({_megabytes(upload.size)}); "
                             f"the limit is {_megabytes(max_bytes)}.")
    upload.seek(0)
    extension = sniff_image(upload.read(12))
    upload.seek(0)
    if extension is None:
        raise HTTPError(415, f"{upload.filename or 'The file'} is not an image this board "
                             f"takes: upload a PNG, JPEG, GIF or WebP file.")
    return extension


def _write(upload: UploadFile, directory: str, name: str) -> None:
    partial = os.path.join(directory, f".{name}.part")
    try:
        with open(partial, "wb") as out:
            shutil.copyfileobj(upload.file, out, 1 << 16)
        os.replace(partial, os.path.join(directory, name))
    except BaseException:
        try:
            os.unlink(partial)
        except OSError:
            pass
        raise


def store_image(upload: UploadFile, directory: str, extension: str) -> Coro[str]:
    """Copy ``upload`` into ``directory`` under a new random name (in the
    thread pool: disk writes may block) and return that name. A file
    appears whole or not at all."""
    name = f"{secrets.token_hex(16)}.{extension}"
    upload.seek(0)
    yield from run_in_thread(_write, upload, directory, name)
    return name


def remove_image(directory: str, name: str) -> None:
    """Delete a stored image (one whose post could not be saved)."""
    try:
        os.unlink(os.path.join(directory, name))
    except OSError:
        pass
