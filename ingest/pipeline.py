"""Files -> items -> the index, with change detection and per-file error reporting.

Every item carries the sha256 of the file it came from. A file is *done* in a version
when the item that stands for the whole file (its ``document``, a ``video``, an image
file's ``image``: the items without a parent) carries that version's hash; that item
is stored last, after every passage, figure, clip and thumbnail of the file, so a run
killed at any point leaves the file not done and the next run ingests it again (parts
stored by the killed run are deleted first). A file done in its current version is
skipped without parsing or embedding. A changed file's new items are stored first and
only then are the old version's deleted, whole-file item first, so a failure half-way
never leaves a file with no items, nor one marked done without its parts; a run killed
between the two finishes the deletion next time without parsing anything. A file that
cannot be read is reported and skipped; the others still go in. Every read stays in
the folders being ingested (``ingest/roots.py``).

Embedding dominates the cost, so passages of many files are embedded together in
large batches rather than file by file.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from ingest.base import Loader, ParsedDocument, Passage, loaders_by_suffix
from ingest.chunking import chunk
from ingest.faults import checkpoint
from ingest.images import IMAGE_SUFFIXES
from ingest.loaders import default_loaders, load_file, with_page_texts
from ingest.media import MEDIA_SUFFIXES, MediaIngest
from ingest.roots import Roots, resolved
from retrieval.base import DEFAULT_WORKSPACE, Corpus, Item, Scope, item_id
from retrieval.errors import EmptyDocumentError, LoaderError, MmragError, OutsideRootError
from retrieval.index import Index

# Deleting a version goes whole-file items first (they mark a file done), then its parts.
_DELETE_ORDER = (Corpus.DOCUMENT, Corpus.VIDEO, Corpus.IMAGE, Corpus.PARAGRAPH, Corpus.CLIP)
# In the media folder while items and files may disagree; found at the start of a run, it
# means the last one was killed, and the files no item uses are deleted.
UNFINISHED_MARK = ".ingest-unfinished"


class FileStatus(StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"  # found in a folder, of a type mmrag does not read
    FAILED = "failed"
    REMOVED = "removed"  # gone from an ingested folder (``prune``): its items deleted


@dataclass(frozen=True)
class FileResult:
    """What happened to one file."""

    path: str
    status: FileStatus
    passages: int = 0
    pages: int | None = None
    message: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class IngestReport:
    """The outcome of one ingest run; ``ok`` is False when any file failed."""

    files: tuple[FileResult, ...]
    seconds: float
    embedded: int = 0

    @property
    def ok(self) -> bool:
        return all(f.status is not FileStatus.FAILED for f in self.files)

    def count(self, status: FileStatus) -> int:
        return sum(1 for f in self.files if f.status is status)


ProgressFn = Callable[[FileResult], None]
# (file, fraction done) while one long file (a video) is being analysed.
StepFn = Callable[[str, float], None]


@dataclass
class _Pending:
    """A parsed file waiting for its passages to be embedded and stored."""

    path: str
    content_hash: str
    replaces: bool  # another version of the file is done: reported as updated
    doc: ParsedDocument
    passages: list[Item]
    document: Item
    vectors: list[np.ndarray] = field(default_factory=list)
    figures: int = 0
    figure_warnings: tuple[str, ...] = ()
    stale: bool = False  # items of other versions to delete once this one is done


@dataclass(frozen=True)
class _Versions:
    """What the index holds per source: the versions (hashes) that are done, and the
    versions any item carries (a killed run leaves items of versions never done)."""

    done: dict[str, set[str]]
    held: dict[str, set[str]]


def _vanished(roots: Iterable[Path], known: Iterable[str]) -> list[str]:
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


def _is_whole(items: Sequence[Item]) -> bool:
    """Whether these items stand for whole files (no parent): stored last, they mark a
    file done."""
    return any(i.parent_id is None for i in items)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


class Ingestor:
    """Ingests files into the ``paragraph`` and ``document`` corpora of an index.

    ``batch_size`` is the number of passages embedded together (across files);
    passage sizes come from the chunker's ``target_words``/``max_words``.
    """

    def __init__(
        self,
        index: Index,
        *,
        loaders: Sequence[Loader] | None = None,
        batch_size: int = 256,
        target_words: int = 180,
        max_words: int = 300,
        media: MediaIngest | None = None,
    ) -> None:
        self.index = index
        self.loaders = loaders_by_suffix(list(loaders) if loaders else default_loaders())
        self.media = media
        self.batch_size = batch_size
        self.target_words = target_words
        self.max_words = max_words

    @property
    def suffixes(self) -> frozenset[str]:
        media = MEDIA_SUFFIXES if self.media is not None else frozenset()
        return frozenset(self.loaders) | media

    def ingest(
        self,
        paths: Sequence[Path | str],
        progress: ProgressFn | None = None,
        step: StepFn | None = None,
        *,
        prune: bool = False,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> IngestReport:
        """Ingest files and folders (recursively) into ``workspace``; ``progress`` is called
        once per file, ``step`` as a long file (a video) is analysed. With ``prune``,
        sources of the workspace inside the given folders that are gone from disk are
        removed.

        Only files inside ``paths`` are read (a named file: the folder holding it): a
        link that leads elsewhere is reported skipped, a picture reference that does is
        a warning."""
        start = time.perf_counter()
        self.index.check()
        named = {Path(p) for p in paths}
        roots = Roots.of(named)
        with self._unfinished():
            results, embedded = self._ingest(
                named, roots, progress, step, prune=prune, workspace=workspace
            )
        return IngestReport(tuple(results), time.perf_counter() - start, embedded)

    def _ingest(
        self,
        named: set[Path],
        roots: Roots,
        progress: ProgressFn | None,
        step: StepFn | None,
        *,
        prune: bool,
        workspace: str,
    ) -> tuple[list[FileResult], int]:
        versions = self._versions(workspace)
        here = (workspace,)
        results: list[FileResult] = []
        pending: list[_Pending] = []
        queued = 0
        embedded = 0

        def emit(result: FileResult) -> None:
            results.append(result)
            if progress:
                progress(result)

        files = list(walk(named))
        if self.media is not None:
            # Documents first: their text is searchable without waiting for slow media
            # (a long video takes minutes), and their passages batch together.
            files.sort(key=lambda f: f.suffix.lower() in MEDIA_SUFFIXES)
        # Scanned PDFs are only known once loaded; their OCR (seconds a page) waits, like
        # media, until the other documents are stored. They are loaded again then.
        scans: list[Path] = []
        second_pass: set[Path] = set()
        # A file is ingested once, under its own path; links inside the roots that lead
        # to it are skipped, and of several links to a file not walked, the first is used.
        itself = {str(real) for f in files if not f.is_symlink() and (real := resolved(f))}
        first_path: dict[str, Path] = {}

        def ordered() -> Iterator[Path]:
            for f in files:
                if f.suffix.lower() in MEDIA_SUFFIXES:
                    while scans:
                        yield scans.pop(0)
                yield f
            while scans:
                yield scans.pop(0)

        for path in ordered():
            try:
                real = roots.confine(path)
            except OutsideRootError:
                emit(
                    FileResult(
                        str(path),
                        FileStatus.SKIPPED,
                        message=f"{path}: skipped, it links outside the folders being ingested",
                    )
                )
                continue
            source = str(real)
            if path not in named and path.suffix.lower() not in self.suffixes:
                # A folder holds other files too (sidecars, spreadsheets): report them as
                # skipped; a file named on the command line that cannot be read failed.
                emit(
                    FileResult(
                        source,
                        FileStatus.SKIPPED,
                        message=f"{path}: skipped, unsupported file type "
                        f"'{path.suffix.lower() or 'none'}'",
                    )
                )
                continue
            linked = path.is_symlink() and source in itself
            if linked or first_path.setdefault(source, path) != path:
                emit(
                    FileResult(
                        str(path),
                        FileStatus.SKIPPED,
                        message=f"{path}: skipped, a link to {source}, which is ingested once",
                    )
                )
                continue
            try:
                digest = file_sha256(roots.confine(real))
            except OSError as e:
                emit(FileResult(source, FileStatus.FAILED, message=f"{path}: cannot read ({e})"))
                continue
            except MmragError as e:
                emit(FileResult(source, FileStatus.FAILED, message=str(e)))
                continue
            done = versions.done.get(source, set())
            held = versions.held.get(source, set())
            if digest in done:
                if held != {digest}:
                    # A killed run stored this version but kept older ones (or the file
                    # was changed back): delete those; nothing to parse or embed.
                    self._delete_versions(source, keep=digest, workspaces=here)
                    emit(
                        FileResult(
                            source,
                            FileStatus.UPDATED,
                            message=f"{path}: other versions' items removed",
                        )
                    )
                else:
                    emit(FileResult(source, FileStatus.UNCHANGED))
                continue
            if digest in held and len(done) <= 1 and path not in second_pass:
                # A killed run stored parts of this very version: start it afresh (what
                # is analysed again need not come out the same, e.g. a video's clips).
                self._delete_versions(source, keep=min(done) if done else None, workspaces=here)
            replaces, stale = bool(done), bool(held - {digest})
            if self.media is not None and path.suffix.lower() in MEDIA_SUFFIXES:
                if pending:  # store the documents before the slow media work starts
                    embedded += self._flush(pending, emit)
                    pending, queued = [], 0
                try:
                    result = self._media(
                        roots.confine(real), source, digest, replaces, stale, step, workspace
                    )
                except MmragError as e:
                    result = FileResult(source, FileStatus.FAILED, message=str(e))
                except Exception as e:  # an analyser bug must not stop the other files
                    result = FileResult(
                        source,
                        FileStatus.FAILED,
                        message=f"{path}: unexpected {type(e).__name__}: {e}",
                    )
                embedded += result.passages
                emit(result)
                continue
            if path in second_pass and pending:  # store the documents before OCR starts
                embedded += self._flush(pending, emit)
                pending, queued = [], 0
            try:
                doc, read_by_ocr = self._load(
                    real, source, step, roots=roots, ocr=path in second_pass
                )
                if doc.untexted_pages and self.media is not None and path not in second_pass:
                    second_pass.add(path)
                    scans.append(path)
                    continue
                item = self._items(source, digest, doc, replaces=replaces, workspace=workspace)
                item.stale = stale
            except MmragError as e:
                emit(FileResult(source, FileStatus.FAILED, message=str(e)))
                continue
            except Exception as e:  # a loader bug must not stop the other files
                emit(
                    FileResult(
                        source,
                        FileStatus.FAILED,
                        message=f"{path}: unexpected {type(e).__name__}: {e}",
                    )
                )
                continue
            if self.media is not None and (real.suffix.lower() == ".pdf" or doc.images):
                item.figures, item.figure_warnings = self._figures(
                    real,
                    source,
                    digest,
                    item.document.id,
                    doc,
                    roots,
                    read_by_ocr,
                    workspace=workspace,
                )
            pending.append(item)
            queued += len(item.passages)
            if queued >= self.batch_size:
                embedded += self._flush(pending, emit)
                pending, queued = [], 0
        embedded += self._flush(pending, emit)
        if prune:
            for source in _vanished(named, versions.held):
                self._delete_versions(source, keep=None, workspaces=here)
                emit(
                    FileResult(
                        source,
                        FileStatus.REMOVED,
                        message=f"{source}: gone from disk, removed from the index",
                    )
                )
        return results, embedded

    def remove_source(self, source: str, workspaces: Scope = None) -> bool:
        """Delete every item of ``source`` (in ``workspaces``; None: all) from every
        corpus, then its thumbnails and keyframes; False if the index had none. Items go
        first: a crash in between leaves unused files (deleted by the next run), never
        items that point at missing ones."""
        with self._unfinished():
            return self._delete_versions(source, keep=None, workspaces=workspaces)

    def _versions(self, workspace: str) -> _Versions:
        store = self.index.store
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
        return _Versions(done, held)

    def _delete_versions(self, source: str, keep: str | None, workspaces: Scope) -> bool:
        """Delete the items of ``source`` (in ``workspaces``) not made from version
        ``keep`` (all of them if None), then the thumbnails and keyframes only they used;
        whether any were found. A version is kept per workspace (``keep`` needs exactly
        one workspace).

        Whole-file items go first: a run killed half-way leaves parts that mark nothing
        done (the next ingest of the file deletes them), never a file marked done whose
        parts are gone.
        """
        store = self.index.store
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
        if self.media is None:
            return
        root = self.media.media_dir.resolve()
        for name in names:
            path = Path(name).resolve()
            if path.is_relative_to(root):  # never a user's own file
                path.unlink(missing_ok=True)

    @contextmanager
    def _unfinished(self) -> Iterator[None]:
        """Mark the media folder while a run writes; a run that finds the mark (the last
        one was killed) first deletes the thumbnails and keyframes no item uses.

        Runs on one media folder are one at a time: the embedded store admits one
        process, and the server's lock serialises ingests and deletions.
        """
        if self.media is None:
            yield
            return
        mark = self.media.media_dir / UNFINISHED_MARK
        if mark.exists():
            self._sweep_media()
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.touch()
        yield
        # Not in a ``finally``: a run that raised may have left files behind as well.
        mark.unlink(missing_ok=True)

    def _sweep_media(self) -> None:
        """Delete the files under the media folder that no item points at: written by a
        run killed before it stored their items, or after it deleted them.

        The media folder belongs to one index, as it already does for deletions: file
        names come from item ids, which do not depend on the collection prefix.
        """
        assert self.media is not None
        store = self.index.store
        used = {
            Path(f).resolve()
            for corpus in (Corpus.IMAGE, Corpus.CLIP, Corpus.VIDEO)
            if store.exists(corpus)
            for item in store.items_of(corpus)
            for f in media_files(item)
        }
        root = self.media.media_dir
        folders = [root, *(root / "ws").glob("*")]  # each workspace has its own
        for folder in (f / kind for f in folders for kind in ("thumbnails", "keyframes")):
            for path in folder.iterdir() if folder.is_dir() else ():
                if path.is_file() and path.resolve() not in used:
                    path.unlink(missing_ok=True)

    # -- internals -----------------------------------------------------------------

    def _load(
        self, path: Path, source: str, step: StepFn | None, *, roots: Roots, ocr: bool
    ) -> tuple[ParsedDocument, frozenset[int]]:
        """Load a document; with ``ocr``, read the pages of a PDF that have no text layer.

        Returns the document and the pages whose text OCR supplied. Without ``ocr`` a
        document with such pages comes back as loaded (the caller reads it later). A PDF
        with no text at all, even after OCR, is refused with a message that says so.
        """
        doc = load_file(roots.confine(path), self.loaders, also=self.suffixes)
        checkpoint("parse")
        pages = doc.untexted_pages
        if pages and self.media is not None and not ocr:
            return doc, frozenset()
        before = set(pages)
        if pages and self.media is not None:
            on_step = None if step is None else (lambda f: step(source, f))
            found = self.media.ocr_pages(roots.confine(path), pages, on_step)
            doc = with_page_texts(doc, found, "OCR")
        if not doc.sections and pages:
            why = "and OCR found no text on them" if self.media else "(a scan; OCR is off)"
            raise EmptyDocumentError(
                f"{path}: no text layer on any of its {len(pages)} pages {why}"
            )
        return doc, frozenset(before - set(doc.untexted_pages))

    def _figures(
        self,
        path: Path,
        source: str,
        digest: str,
        document_id: str,
        doc: ParsedDocument,
        roots: Roots,
        read_by_ocr: frozenset[int] = frozenset(),
        workspace: str = DEFAULT_WORKSPACE,
    ) -> tuple[int, tuple[str, ...]]:
        """Store a document's pictures as image items (one that fails is only skipped).

        A PDF's embedded figures; the local files an HTML or Markdown page shows (inside
        ``roots`` only). They are parts of the document: stored before its passages and
        its document item.
        """
        assert self.media is not None
        try:
            found = (
                self.media.pdf_figures(
                    roots.confine(path),
                    source,
                    digest,
                    document_id,
                    doc=doc,
                    skip_pages=read_by_ocr,
                    workspace=workspace,
                )
                if path.suffix.lower() == ".pdf"
                else self.media.linked_images(
                    path, doc.images, source, digest, document_id, roots, workspace=workspace
                )
            )
        except MmragError as e:
            return 0, (f"pictures skipped: {e}",)
        except Exception as e:  # a decoder bug costs the pictures, not the document
            return 0, (f"pictures skipped: unexpected {type(e).__name__}",)
        for corpus, items in found.corpus_items.items():
            self.index.add(items, None, found.visual.get(corpus))
            checkpoint("store")
        return sum(len(i) for i in found.corpus_items.values()), found.warnings

    def _media(
        self,
        path: Path,
        source: str,
        digest: str,
        replaces: bool,
        stale: bool,
        step: StepFn | None,
        workspace: str,
    ) -> FileResult:
        """An image, video or audio file: analyse, store its parts (clips), then the item
        that stands for the whole file, then drop other versions."""
        assert self.media is not None
        suffix = path.suffix.lower()
        found = (
            self.media.image(path, source, digest, workspace)
            if suffix in IMAGE_SUFFIXES
            else self.media.video(
                path,
                source,
                digest,
                None if step is None else lambda f: step(source, f),
                workspace,
            )
        )
        wholes = [c for c, items in found.corpus_items.items() if _is_whole(items)]
        vectors: dict[Corpus, np.ndarray] = {}
        for corpus, items in found.corpus_items.items():
            if corpus not in wholes:
                vectors[corpus] = self.index.add(items, None, found.visual.get(corpus))
                checkpoint("store")
        checkpoint("record")
        for corpus in wholes:
            dense = None
            if corpus is Corpus.VIDEO and Corpus.CLIP in vectors and len(vectors[Corpus.CLIP]):
                # A whole video's vector is the mean of its clips' (DESIGN: corpora).
                mean = vectors[Corpus.CLIP].mean(axis=0)
                dense = np.stack([mean / (np.linalg.norm(mean) or 1.0)]).astype(np.float32)
            self.index.add(found.corpus_items[corpus], dense, found.visual.get(corpus))
        if stale:
            self._delete_versions(source, keep=digest, workspaces=(workspace,))
        primary = found.corpus_items.get(Corpus.CLIP) or found.corpus_items.get(Corpus.IMAGE, [])
        return FileResult(
            source,
            FileStatus.UPDATED if replaces else FileStatus.ADDED,
            passages=len(primary),
            warnings=found.warnings,
        )

    def _items(
        self, source: str, digest: str, doc: ParsedDocument, replaces: bool, workspace: str
    ) -> _Pending:
        passages = chunk(doc, target_words=self.target_words, max_words=self.max_words)
        if not passages:
            raise LoaderError(f"{source}: no text to index")
        doc_id = item_id(source, digest, "document", workspace=workspace)
        items = [
            self._passage_item(source, digest, doc, p, n, doc_id, workspace)
            for n, p in enumerate(passages)
        ]
        body = "\n\n".join(doc.texts)
        # The first 200 words; splitting only the start keeps a huge file from becoming
        # a list of every word it holds.
        head = " ".join(body[:20_000].split()[:200])
        document = Item(
            id=doc_id,
            corpus=Corpus.DOCUMENT,
            text=f"{doc.title}\n\n{head}" if doc.title else head,
            source=source,
            content_hash=digest,
            title=doc.title,
            sparse_text=f"{doc.title}\n{body}",
            extra={
                "media_type": doc.media_type,
                "pages": doc.page_count,
                "passages": len(items),
                "passage_ids": [i.id for i in items],
                "warnings": list(doc.warnings),
            },
            workspace=workspace,
        )
        return _Pending(source, digest, replaces, doc, items, document)

    @staticmethod
    def _passage_item(
        source: str,
        digest: str,
        doc: ParsedDocument,
        p: Passage,
        n: int,
        doc_id: str,
        workspace: str,
    ) -> Item:
        context = " > ".join(x for x in (doc.title, *p.heading) if x)
        return Item(
            id=item_id(source, digest, "passage", n, workspace=workspace),
            corpus=Corpus.PARAGRAPH,
            text=p.text,
            source=source,
            content_hash=digest,
            title=doc.title,
            page=p.page,
            heading=p.heading,
            char_start=p.char_start,
            char_end=p.char_end,
            parent_id=doc_id,
            embed_text=f"{context}\n{p.text}" if context else p.text,
            extra={"media_type": doc.media_type, "n": n},
            workspace=workspace,
        )

    def _flush(self, pending: list[_Pending], emit: Callable[[FileResult], None]) -> int:
        """Embed and store the passages of the pending files, then their documents (which
        mark them done), then drop the files' other versions."""
        if not pending:
            return 0
        passages = [i for p in pending for i in p.passages]
        vectors = self.index.embed(passages)
        checkpoint("embed")
        self.index.add(passages, vectors)
        checkpoint("store")
        documents: list[Item] = []
        doc_vectors = []
        offset = 0
        for p in pending:
            own = vectors[offset : offset + len(p.passages)]
            offset += len(p.passages)
            # The document vector is the mean of its passages: the whole text, at no
            # extra encoder cost.
            mean = own.mean(axis=0)
            doc_vectors.append(mean / (np.linalg.norm(mean) or 1.0))
            documents.append(p.document)
        checkpoint("record")
        self.index.add(documents, np.stack(doc_vectors).astype(np.float32))
        for p in pending:
            if p.stale:
                self._delete_versions(
                    p.path, keep=p.content_hash, workspaces=(p.document.workspace,)
                )
            emit(
                FileResult(
                    p.path,
                    FileStatus.UPDATED if p.replaces else FileStatus.ADDED,
                    passages=len(p.passages),
                    pages=p.doc.page_count,
                    warnings=p.doc.warnings + p.figure_warnings,
                )
            )
        return len(passages)
