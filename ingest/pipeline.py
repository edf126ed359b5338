"""Files -> items -> the index, with change detection and per-file error reporting.

Every item carries the sha256 of the file it came from. A file whose hash is already
stored is skipped without parsing or embedding; a changed file's new items are stored
first and only then are the old version's items deleted, so a failure half-way never
leaves a file with no items. A file that cannot be read is reported and skipped; the
others still go in.

Embedding dominates the cost, so passages of many files are embedded together in
large batches rather than file by file.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from ingest.base import Loader, ParsedDocument, Passage, loaders_by_suffix
from ingest.chunking import chunk
from ingest.images import IMAGE_SUFFIXES
from ingest.loaders import default_loaders, load_file, with_page_texts
from ingest.media import MEDIA_SUFFIXES, MediaIngest
from retrieval.base import Corpus, Item, item_id
from retrieval.errors import EmptyDocumentError, LoaderError, MmragError
from retrieval.index import Index


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
    replaces: bool
    doc: ParsedDocument
    passages: list[Item]
    document: Item
    vectors: list[np.ndarray] = field(default_factory=list)
    figures: int = 0
    figure_warnings: tuple[str, ...] = ()


def _vanished(roots: Iterable[Path], known: Iterable[str]) -> list[str]:
    """Indexed sources inside the folders ``roots`` that no longer exist on disk."""
    folders = [r.resolve() for r in roots if r.is_dir()]
    return sorted(
        s for s in known if any(Path(s).is_relative_to(f) for f in folders) and not Path(s).exists()
    )


def _media_files(item: Item) -> list[str]:
    """The files mmrag wrote for an item: its thumbnail and keyframes."""
    extra = item.extra
    names = [extra["thumbnail"]] if isinstance(extra.get("thumbnail"), str) else []
    return names + [str(k) for k in extra.get("keyframes") or []]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def walk(paths: Iterable[Path]) -> Iterator[Path]:
    """Files under the given paths, recursively, in a stable order; hidden ones skipped."""
    for root in paths:
        if root.is_file():
            yield root
        elif root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if not name.startswith("."):
                        yield Path(dirpath) / name
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
    ) -> IngestReport:
        """Ingest files and folders (recursively); ``progress`` is called once per file,
        ``step`` as a long file (a video) is analysed. With ``prune``, sources of the
        index inside the given folders that are gone from disk are removed."""
        start = time.perf_counter()
        self.index.check()
        # One item per file in these corpora carries the file's hash.
        known: dict[str, set[str]] = {}
        for corpus in (Corpus.DOCUMENT, Corpus.IMAGE, Corpus.VIDEO):
            known.update(self.index.store.source_hashes(corpus))
        results: list[FileResult] = []
        pending: list[_Pending] = []
        queued = 0
        embedded = 0

        def emit(result: FileResult) -> None:
            results.append(result)
            if progress:
                progress(result)

        named = {Path(p) for p in paths}
        files = list(walk(named))
        if self.media is not None:
            # Documents first: their text is searchable without waiting for slow media
            # (a long video takes minutes), and their passages batch together.
            files.sort(key=lambda f: f.suffix.lower() in MEDIA_SUFFIXES)
        # Scanned PDFs are only known once loaded; their OCR (seconds a page) waits, like
        # media, until the other documents are stored. They are loaded again then.
        scans: list[Path] = []
        second_pass: set[Path] = set()

        def ordered() -> Iterator[Path]:
            for f in files:
                if f.suffix.lower() in MEDIA_SUFFIXES:
                    while scans:
                        yield scans.pop(0)
                yield f
            while scans:
                yield scans.pop(0)

        for path in ordered():
            source = str(path.resolve())
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
            try:
                digest = file_sha256(path)
            except OSError as e:
                emit(FileResult(source, FileStatus.FAILED, message=f"{path}: cannot read ({e})"))
                continue
            stored = known.get(source, set())
            if stored == {digest}:
                emit(FileResult(source, FileStatus.UNCHANGED))
                continue
            if self.media is not None and path.suffix.lower() in MEDIA_SUFFIXES:
                if pending:  # store the documents before the slow media work starts
                    embedded += self._flush(pending, emit)
                    pending, queued = [], 0
                try:
                    result = self._media(path, source, digest, bool(stored), step)
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
                doc, read_by_ocr = self._load(path, source, step, ocr=path in second_pass)
                if doc.untexted_pages and self.media is not None and path not in second_pass:
                    second_pass.add(path)
                    scans.append(path)
                    continue
                item = self._items(source, digest, doc, replaces=bool(stored))
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
            if self.media is not None and (path.suffix.lower() == ".pdf" or doc.images):
                item.figures, item.figure_warnings = self._figures(
                    path, source, digest, item.document.id, doc, read_by_ocr
                )
            pending.append(item)
            queued += len(item.passages)
            if queued >= self.batch_size:
                embedded += self._flush(pending, emit)
                pending, queued = [], 0
        embedded += self._flush(pending, emit)
        if prune:
            for source in _vanished(named, known):
                self.remove_source(source)
                emit(
                    FileResult(
                        source,
                        FileStatus.REMOVED,
                        message=f"{source}: gone from disk, removed from the index",
                    )
                )
        return IngestReport(tuple(results), time.perf_counter() - start, embedded)

    def remove_source(self, source: str) -> bool:
        """Delete every item of ``source`` from every corpus, then its thumbnails and
        keyframes; False if the index had none. Items go first: a crash in between
        leaves unused files, never items that point at missing ones."""
        store = self.index.store
        removed: list[Item] = []
        for corpus in Corpus:
            if store.exists(corpus) and (items := store.items_of(corpus, source)):
                store.delete_source(corpus, source)
                removed += items
        self._unlink_media({f for item in removed for f in _media_files(item)})
        return bool(removed)

    def _drop_stale(self, corpus: Corpus, source: str, keep_hash: str) -> None:
        """Delete the items of an older version of ``source``, then the thumbnails and
        keyframes only they used."""
        store = self.index.store
        if not store.exists(corpus):
            return
        items = store.items_of(corpus, source)
        store.delete_stale(corpus, source, keep_hash)
        kept = {f for i in items if i.content_hash == keep_hash for f in _media_files(i)}
        stale = {f for i in items if i.content_hash != keep_hash for f in _media_files(i)}
        self._unlink_media(stale - kept)

    def _unlink_media(self, names: Iterable[str]) -> None:
        if self.media is None:
            return
        root = self.media.media_dir.resolve()
        for name in names:
            path = Path(name).resolve()
            if path.is_relative_to(root):  # never a user's own file
                path.unlink(missing_ok=True)

    # -- internals -----------------------------------------------------------------

    def _load(
        self, path: Path, source: str, step: StepFn | None, *, ocr: bool
    ) -> tuple[ParsedDocument, frozenset[int]]:
        """Load a document; with ``ocr``, read the pages of a PDF that have no text layer.

        Returns the document and the pages whose text OCR supplied. Without ``ocr`` a
        document with such pages comes back as loaded (the caller reads it later). A PDF
        with no text at all, even after OCR, is refused with a message that says so.
        """
        doc = load_file(path, self.loaders, also=self.suffixes)
        pages = doc.untexted_pages
        if pages and self.media is not None and not ocr:
            return doc, frozenset()
        before = set(pages)
        if pages and self.media is not None:
            on_step = None if step is None else (lambda f: step(source, f))
            doc = with_page_texts(doc, self.media.ocr_pages(path, pages, on_step), "OCR")
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
        read_by_ocr: frozenset[int] = frozenset(),
    ) -> tuple[int, tuple[str, ...]]:
        """Store a document's pictures as image items (one that fails is only skipped).

        A PDF's embedded figures; the local files an HTML or Markdown page shows.
        """
        assert self.media is not None
        try:
            found = (
                self.media.pdf_figures(
                    path, source, digest, document_id, doc=doc, skip_pages=read_by_ocr
                )
                if path.suffix.lower() == ".pdf"
                else self.media.linked_images(path, doc.images, source, digest, document_id)
            )
        except MmragError as e:
            return 0, (f"pictures skipped: {e}",)
        for corpus, items in found.corpus_items.items():
            self.index.add(items, None, found.visual.get(corpus))
        return sum(len(i) for i in found.corpus_items.values()), found.warnings

    def _media(
        self, path: Path, source: str, digest: str, replaces: bool, step: StepFn | None
    ) -> FileResult:
        """An image, video or audio file: analyse, store its items, then drop old ones."""
        assert self.media is not None
        suffix = path.suffix.lower()
        found = (
            self.media.image(path, source, digest)
            if suffix in IMAGE_SUFFIXES
            else self.media.video(
                path, source, digest, None if step is None else lambda f: step(source, f)
            )
        )
        vectors: dict[Corpus, np.ndarray] = {}
        for corpus, items in found.corpus_items.items():
            dense = None
            if corpus is Corpus.VIDEO and Corpus.CLIP in vectors and len(vectors[Corpus.CLIP]):
                # A whole video's vector is the mean of its clips' (DESIGN: corpora).
                mean = vectors[Corpus.CLIP].mean(axis=0)
                dense = np.stack([mean / (np.linalg.norm(mean) or 1.0)]).astype(np.float32)
            vectors[corpus] = self.index.add(items, dense, found.visual.get(corpus))
        if replaces:
            for corpus in (Corpus.IMAGE, Corpus.CLIP, Corpus.VIDEO):
                self._drop_stale(corpus, source, digest)
        primary = found.corpus_items.get(Corpus.CLIP) or found.corpus_items.get(Corpus.IMAGE, [])
        return FileResult(
            source,
            FileStatus.UPDATED if replaces else FileStatus.ADDED,
            passages=len(primary),
            warnings=found.warnings,
        )

    def _items(self, source: str, digest: str, doc: ParsedDocument, replaces: bool) -> _Pending:
        passages = chunk(doc, target_words=self.target_words, max_words=self.max_words)
        if not passages:
            raise LoaderError(f"{source}: no text to index")
        doc_id = item_id(source, digest, "document")
        items = [
            self._passage_item(source, digest, doc, p, n, doc_id) for n, p in enumerate(passages)
        ]
        body = "\n\n".join(doc.texts)
        head = " ".join(body.split()[:200])
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
        )
        return _Pending(source, digest, replaces, doc, items, document)

    @staticmethod
    def _passage_item(
        source: str, digest: str, doc: ParsedDocument, p: Passage, n: int, doc_id: str
    ) -> Item:
        context = " > ".join(x for x in (doc.title, *p.heading) if x)
        return Item(
            id=item_id(source, digest, "passage", n),
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
        )

    def _flush(self, pending: list[_Pending], emit: Callable[[FileResult], None]) -> int:
        """Embed and store the passages of the pending files, then their documents."""
        if not pending:
            return 0
        passages = [i for p in pending for i in p.passages]
        vectors = self.index.add(passages)
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
        self.index.add(documents, np.stack(doc_vectors).astype(np.float32))
        for p in pending:
            if p.replaces:
                for corpus in (Corpus.PARAGRAPH, Corpus.DOCUMENT):
                    self.index.store.delete_stale(corpus, p.path, p.content_hash)
                self._drop_stale(Corpus.IMAGE, p.path, p.content_hash)  # its figures
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
