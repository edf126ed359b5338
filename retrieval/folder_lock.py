"""One process per embedded store folder, and a clear word about who holds it.

The embedded engines (Qdrant Edge, qdrant-client's local mode) assume they are alone on
their folder. Their own locks are taken while a shard opens, after files were already
touched: a second process that failed to open a live folder still left the running
server's write journal damaged (every later write failed). So the store takes this lock
*before* it opens anything, and a process that cannot take it never touches the folder.

The lock itself is ``filelock`` (an OS lock the kernel drops when the holder dies, so a
``kill -9`` never leaves a stale lock). Beside it the holder writes ``holder.json``
(pid, command, start time and, for ``mmrag serve``, the URL and a local token a CLI on
the same machine can use to ask the server instead), readable by its owner only. The
file is only believed while the lock is actually held.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from retrieval.errors import StoreLockedError

_LOCK = ".mmrag.lock"
_HOLDER = "holder.json"

COMMAND: str | None = None
"""How this process is named to others (the ``mmrag`` CLI sets its command line here);
the interpreter's arguments otherwise."""


class FolderLock:
    """An exclusive, non-blocking lock on a store folder, released by :meth:`release`."""

    def __init__(self, folder: Path | str) -> None:
        from filelock import FileLock, Timeout

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.folder / _LOCK), timeout=0, thread_local=False)
        try:
            self._lock.acquire()
        except Timeout:
            raise StoreLockedError(describe_holder(self.folder)) from None
        self.info: dict[str, Any] = {
            "pid": os.getpid(),
            "command": (COMMAND or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))[:200],
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        self._write()

    def announce(self, url: str) -> str:
        """Record that this process serves the store at ``url``; returns the local token
        that lets a CLI on this machine (with read access to the folder) ask it."""
        token = secrets.token_urlsafe(32)
        self.info.update(url=url, token=token)
        self._write()
        return token

    def release(self) -> None:
        if self._lock.is_locked:
            (self.folder / _HOLDER).unlink(missing_ok=True)
            self._lock.release()

    def _write(self) -> None:
        path = self.folder / _HOLDER
        tmp = path.with_name(f".{_HOLDER}.{os.getpid()}.tmp")
        # Owner-only: the token is a credential for the running server.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.info, f)
        os.replace(tmp, path)


def holder(folder: Path | str) -> dict[str, Any] | None:
    """What the process holding ``folder`` wrote about itself, if it could be read."""
    try:
        data = json.loads((Path(folder) / _HOLDER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_holder(folder: Path) -> str:
    """The sentence a user sees when the folder is taken."""
    info = holder(folder) or {}
    facts = [f"pid {info.get('pid', 'unknown')}"]
    if info.get("since"):
        facts.append(f"since {info['since']}")
    if info.get("url"):
        facts.append(f"serving {info['url']}")
    who = f"`{info.get('command') or 'unknown command'}` ({', '.join(facts)})"
    return (
        f"the data folder {folder} is in use by another mmrag process, {who}. "
        "The embedded store allows one process per folder: stop that process, use its API, "
        "or run a Qdrant server and set MMRAG_QDRANT_URL"
    )
