"""Uploaded files: where they are kept, under which name, and when they are removed.

Every surface that takes a file from a client (the REST API, the web UI, the
OpenAI-compatible endpoint's images) goes through :class:`Uploads`, so the rules hold
everywhere:

- **Bounded while it streams in**: a file is copied in 1 MB blocks and refused past the
  limit, before it is complete on disk (the request body is also capped by the guard).
- **Content-addressed per workspace**: ``uploads/<workspace>/<sha256[:16]>/<name>``.
  Uploading the same file again lands on the same path, so the ingest sees an unchanged
  source instead of a second copy with duplicated passages; two different files with one
  name in one request are both kept.
- **Nothing left behind**: a file written to the staging folder first is moved into place
  atomically or deleted; a file whose ingestion failed and question photos are deleted
  (:meth:`Uploads.discard`, :meth:`Uploads.temporary`).
- **Names are safe**: no directory part, no NUL, at most 200 bytes, the suffix kept
  (it decides how the file is read).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from retrieval.errors import MmragError

BLOCK = 1 << 20


class UploadTooLarge(MmragError):
    """An upload over the size limit (answered with 413)."""


def safe_name(filename: str | None, default: str) -> str:
    """A client's file name made safe to write: no directories, no NUL, at most 200 bytes.

    The suffix is kept because it decides how the file is ingested.
    """
    name = Path((filename or "").replace("\x00", "").replace("\\", "/")).name or default
    stem, suffix = Path(name).stem, Path(name).suffix[:20]
    while len((stem + suffix).encode()) > 200:
        stem = stem[:-1]
    return (stem + suffix) or default


_PATH = re.compile(r"""(?<![\w:/.~])/(?:[^\s/:'"]+/)+([^\s/:'"]+)""")


def public_message(message: str) -> str:
    """``message`` with absolute server paths cut to their last part (error messages name
    files by their full path; a client should learn the file's name, not the server's
    layout). URLs are left alone."""
    return _PATH.sub(r"\1", message)


class Uploads:
    """The upload folder of a data folder (see the module docstring)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._staging = root / ".staging"

    def _stage(self, stream: BinaryIO, label: str) -> tuple[Path, str]:
        """Copy ``stream`` to a staging file; returns it and its sha256."""
        self._staging.mkdir(parents=True, exist_ok=True)
        staged = self._staging / uuid.uuid4().hex
        digest = hashlib.sha256()
        written = 0
        try:
            with staged.open("wb") as out:
                while block := stream.read(BLOCK):
                    written += len(block)
                    if written > self.max_bytes:
                        raise UploadTooLarge(
                            f"{label}: larger than the {self.max_bytes // (1024 * 1024)} MB "
                            "upload limit (MMRAG_MAX_UPLOAD_MB)"
                        )
                    digest.update(block)
                    out.write(block)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        return staged, digest.hexdigest()

    def save(self, stream: BinaryIO, filename: str | None, workspace: str) -> Path:
        """Keep an uploaded file; returns where it lies (the path ingest uses as source)."""
        name = safe_name(filename, "upload")
        staged, sha = self._stage(stream, name)
        folder = self.root / workspace / sha[:16]
        target = folder / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if target.is_file() and not target.is_symlink():
                staged.unlink()  # the same bytes under the same name: already here
            else:
                os.replace(staged, target)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        return target

    def discard(self, path: Path) -> None:
        """Delete an upload that will not be kept (its ingestion failed), and its folder."""
        path = Path(path)
        if not path.resolve().is_relative_to(self.root.resolve()):
            return  # never anything outside the upload folder
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty

    @contextmanager
    def temporary(self, stream: BinaryIO, filename: str | None) -> Iterator[Path]:
        """An upload used for one request only (a question's photo), deleted afterwards."""
        name = safe_name(filename, "photo")
        staged, _ = self._stage(stream, name)
        path = staged.with_name(f"{staged.name}{Path(name).suffix}")
        os.replace(staged, path)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def clear_staging(self, older_than_s: float = 3600) -> None:
        """Remove what a killed process left half-written (called at start-up); recent
        files are left alone, another replica may be writing them."""
        if not self._staging.is_dir():
            return
        cutoff = time.time() - older_than_s
        for leftover in self._staging.iterdir():
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
