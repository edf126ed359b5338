"""The folders an ingest run may read from, and the check every read goes through.

Ingesting a folder must not expose the rest of the disk: a symlink ``passwd.txt ->
/etc/passwd`` in the folder, or a Markdown page showing ``![x](/home/me/secret.png)``,
would otherwise have that file read, indexed and served back. So an ingest run has
roots, and a path is read only if it resolves (symlinks followed, ``..`` collapsed)
inside one of them:

- a folder named to ``ingest`` is a root;
- a file named directly (and so an API upload) has the folder that holds it as root:
  pictures beside it may be read, nothing above it.

The check runs when a file is taken up and again right before each read of it (the
path resolved anew), so a file swapped for a link in between is caught too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import OutsideRootError


def resolved(path: Path) -> Path | None:
    """``path`` with every symlink followed, or None if that cannot be done (a loop, a
    NUL in the name)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a loop (Python < 3.13)
        return None


@dataclass(frozen=True)
class Roots:
    """Resolved folders; a path may be read when it resolves inside one of them."""

    folders: tuple[Path, ...]

    @classmethod
    def of(cls, paths: Iterable[Path | str]) -> Roots:
        """The roots of an ingest of ``paths`` (see the module docstring)."""
        folders = []
        for p in map(Path, paths):
            # A named link to a folder is the operator's choice: its target is the root.
            folder = resolved(p if p.is_dir() else p.parent)
            if folder is not None:
                folders.append(folder)
        return cls(tuple(dict.fromkeys(folders)))

    def holds(self, path: Path) -> bool:
        """Whether ``path`` resolves inside a root (False if it cannot be resolved)."""
        real = resolved(path)
        return real is not None and any(real.is_relative_to(f) for f in self.folders)

    def confine(self, path: Path) -> Path:
        """``path`` resolved, for reading; OutsideRootError if it leads out of the roots."""
        real = resolved(path)
        if real is None or not any(real.is_relative_to(f) for f in self.folders):
            raise OutsideRootError(f"{path}: links outside the folders being ingested")
        return real


def walk(paths: Iterable[Path]) -> Iterator[Path]:
    """Files under the given paths, recursively, in a stable order; hidden ones skipped.

    Links to folders are never followed: one inside the roots leads to files found at
    their own place anyway, and one that leads out is yielded, to be reported skipped.
    Links to files are yielded like files (the caller checks where they lead).
    """
    paths = list(paths)
    roots = Roots.of(paths)
    for root in paths:
        if root.is_file():
            yield root
        elif root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                here = Path(dirpath)
                links = {d for d in dirnames if (here / d).is_symlink()}
                dirnames[:] = sorted(d for d in dirnames if not (d.startswith(".") or d in links))
                leaving = {d for d in links if not roots.holds(here / d)}
                for name in sorted([*filenames, *leaving]):
                    if not name.startswith("."):
                        yield here / name
        else:
            # A path that does not exist is reported like an unreadable file.
            yield root
