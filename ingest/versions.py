"""The versions of each source the index holds, and deleting the ones no longer wanted.

Every item carries the sha256 of the file it came from. A file is *done* in a version
when its whole-file item (its ``document``, a ``video``, an image file's ``image``: the
items without a parent) carries that hash; :class:`Versions` tells which versions are
done and which any item carries, and deletes a source's items of other versions in an
order that a crash at any point leaves recoverable: whole-file items first, then parts,
then the thumbnails and keyframes only they used. Items go before files, so a crash in
between leaves unused files, which the next run deletes (:meth:`Versions.unfinished`),
never items that point at missing ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ingest.faults import checkpoint
from retrieval.base import Corpus, Item, Scope, Store

# Deleting a version goes whole-file items first (they mark a file done), then its parts.
_DELETE_ORDER = (Corpus.DOCUMENT, Corpus.VIDEO, Corpus.IMAGE, Corpus.PARAGRAPH, Corpus.CLIP)
# In the media folder while items and files may disagree; found at the start of a run, it
# means the last one was killed, and the files no item uses are deleted.
UNFINISHED_MARK = ".ingest-unfinished"


@dataclass(frozen=True)
class Held:
    """What the index holds per source: the versions (hashes) that are done, and the
    versions any item carries (a killed run leaves items of versions never done)."""

    done: dict[str, set[str]]
    held: dict[str, set[str]]


def file_sha256(path: Path) -> str:
    """The version of a file: the sha256 of its bytes, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def vanished(roots: Iterable[Path], known: Iterable[str]) -> list[str]:
    """Indexed sources inside the folders ``roots`` that no longer exist on disk."""
    folders = [r.resolve() for r in roots if r.is_dir()]
    return sorted(
        s for s in known if any(Path(s).is_relative_to(f) for f in folders) and not Path(s).exists()
    )


def media_files(item: Item) -> list[str]:
    """The files mmrag wrote for an item: its thumbnail and keyframes."""
    extra = item.extra
    names = [extra["thumbnail"]] if isinstance(extra.get("thumbnail"), str) else []
    return names + [str(k) for k in extra.get("keyframes") or []]


class Versions:
    """The versions of sources in ``store``; ``media_dir`` (None: documents only) is the
    folder of the thumbnails and keyframes mmrag wrote, the only files it deletes."""

    def __init__(self, store: Store, media_dir: Path | None) -> None:
        self.store = store
        self.media_dir = media_dir

    def held(self, workspace: str) -> Held:
        """The done and held versions of every source of ``workspace``."""
        store = self.store
        done: dict[str, set[str]] = {}
        held: dict[str, set[str]] = {}
        here = (workspace,)
        for corpus in Corpus:
            if not store.exists(corpus):
                continue
            for source, hashes in store.source_hashes(corpus, here).items():
                held.setdefault(source, set()).update(hashes)
            if corpus in (Corpus.DOCUMENT, Corpus.VIDEO, Corpus.IMAGE):
                whole = store.source_hashes(corpus, here, whole_files=True)
                for source, hashes in whole.items():
                    done.setdefault(source, set()).update(hashes)
        return Held(done, held)

    def delete(self, source: str, keep: str | None, workspaces: Scope) -> bool:
        """Delete the items of ``source`` (in ``workspaces``) not made from version
        ``keep`` (all of them if None), then the thumbnails and keyframes only they used;
        whether any were found. A version is kept per workspace (``keep`` needs exactly
        one workspace).

        Whole-file items go first: a run killed half-way leaves parts that mark nothing
        done (the next ingest of the file deletes them), never a file marked done whose
        parts are gone.
        """
        store = self.store
        gone: list[Item] = []
        kept: set[str] = set()
        for corpus in _DELETE_ORDER:
            if not store.exists(corpus):
                continue
            items = store.items_of(corpus, source, workspaces)
            kept |= {f for i in items if i.content_hash == keep for f in media_files(i)}
            old = [i for i in items if i.content_hash != keep]
            if not old:
                continue
            checkpoint("replace")
            if keep is None:
                store.delete_source(corpus, source, workspaces)
            else:
                assert workspaces is not None and len(workspaces) == 1
                store.delete_stale(corpus, source, keep, workspaces[0])
            gone += old
        if gone:
            checkpoint("replace")
        self._unlink_media({f for i in gone for f in media_files(i)} - kept)
        return bool(gone)

    def _unlink_media(self, names: Iterable[str]) -> None:
        if self.media_dir is None:
            return
        root = self.media_dir.resolve()
        for name in names:
            path = Path(name).resolve()
            if path.is_relative_to(root):  # never a user's own file
                path.unlink(missing_ok=True)

    @contextmanager
    def unfinished(self) -> Iterator[None]:
        """Mark the media folder while a run writes; a run that finds the mark (the last
        one was killed) first deletes the thumbnails and keyframes no item uses.

        Runs on one media folder are one at a time: the embedded store admits one
        process, and the server's lock serialises ingests and deletions.
        """
        if self.media_dir is None:
            yield
            return
        mark = self.media_dir / UNFINISHED_MARK
        if mark.exists():
            self._sweep_media(self.media_dir)
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.touch()
        yield
        # Not in a ``finally``: a run that raised may have left files behind as well.
        mark.unlink(missing_ok=True)

    def _sweep_media(self, root: Path) -> None:
        """Delete the files under the media folder that no item points at: written by a
        run killed before it stored their items, or after it deleted them.

        The media folder belongs to one index, as it already does for deletions: file
        names come from item ids, which do not depend on the collection prefix.
        """
        store = self.store
        used = {
            Path(f).resolve()
            for corpus in (Corpus.IMAGE, Corpus.CLIP, Corpus.VIDEO)
            if store.exists(corpus)
            for item in store.items_of(corpus)
            for f in media_files(item)
        }
        folders = [root, *(root / "ws").glob("*")]  # each workspace has its own
        for folder in (f / kind for f in folders for kind in ("thumbnails", "keyframes")):
            for path in folder.iterdir() if folder.is_dir() else ():
                if path.is_file() and path.resolve() not in used:
                    path.unlink(missing_ok=True)
