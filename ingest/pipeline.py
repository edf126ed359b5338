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
between the two finishes the deletion next time without parsing anything
(``ingest/versions.py``). A file that cannot be read is reported and skipped; the
others still go in. Every read stays in the folders being ingested (``ingest/roots.py``).

A run has three phases, cheapest first, so what is quick to ingest is searchable
without waiting for what is slow:

1. documents: parsed and chunked, their passages embedded together in large batches
   across files (embedding dominates the cost);
2. scanned PDFs (pages without a text layer, known only once loaded): loaded again and
   read by OCR, seconds a page, each stored before the next one's OCR starts;
3. media (images, videos, recordings): analysed one file at a time (a long video takes
   minutes).

The crash bench (``mmrag bench crash``, ``ingest/faults.py``) kills runs at the
``checkpoint`` calls: they mark the same stages in every phase.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.base import (
    FileResult,
    FileStatus,
    IngestReport,
    Loader,
    ParsedDocument,
    ProgressFn,
    StepFn,
    loaders_by_suffix,
)
from ingest.document_items import document_items
from ingest.faults import checkpoint
from ingest.images.decode import IMAGE_SUFFIXES
from ingest.loaders import default_loaders, load_file
from ingest.media import MEDIA_SUFFIXES, MediaIngest
from ingest.pdf import with_page_texts
from ingest.roots import Roots, resolved, walk
from ingest.versions import Held, Versions, file_sha256, vanished
from retrieval.base import DEFAULT_WORKSPACE, Corpus, Item, Scope
from retrieval.errors import EmptyDocumentError, MmragError, OutsideRootError
from retrieval.index import Index


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
class _Admitted:
    """A file taken up: where it is, its version, and how that stands to the stored ones."""

    path: Path  # as walked
    real: Path  # resolved, inside the roots
    source: str
    digest: str
    replaces: bool  # another version of the file is done: reported as updated
    stale: bool  # items of other versions to delete once this one is done


@dataclass
class _Run:
    """One call of :meth:`Ingestor.ingest`: what its three phases share."""

    roots: Roots
    named: set[Path]
    workspace: str
    held: Held  # as the run found the index
    progress: ProgressFn | None
    step: StepFn | None
    # Real paths of the walked files that are not links (a link to one is skipped), and
    # the walked path each source was first taken up under.
    itself: set[str]
    first_path: dict[str, Path] = field(default_factory=dict)
    results: list[FileResult] = field(default_factory=list)
    pending: list[_Pending] = field(default_factory=list)  # parsed, not yet stored
    queued: int = 0  # passages of the pending files
    embedded: int = 0

    def emit(self, result: FileResult) -> None:
        self.results.append(result)
        if self.progress:
            self.progress(result)

    def skip(self, where: str, message: str) -> None:
        self.emit(FileResult(where, FileStatus.SKIPPED, message=message))

    def fail(self, source: str, message: str) -> None:
        self.emit(FileResult(source, FileStatus.FAILED, message=message))


def _is_whole(items: Sequence[Item]) -> bool:
    """Whether these items stand for whole files (no parent): stored last, they mark a
    file done."""
    return any(i.parent_id is None for i in items)


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
        with self._versions.unfinished():
            held = self._versions.held(workspace)
            files = list(walk(named))
            # A file is ingested once, under its own path; links inside the roots that
            # lead to it are skipped, and of several links to a file not walked, the first.
            itself = {str(real) for f in files if not f.is_symlink() and (real := resolved(f))}
            run = _Run(roots, named, workspace, held, progress, step, itself)
            media = [f for f in files if self._is_media(f)]
            scans = self._documents(run, [f for f in files if not self._is_media(f)])
            self._scans(run, scans)
            self._media_files(run, media)
            self._flush(run)
            if prune:
                self._prune(run)
        return IngestReport(tuple(run.results), time.perf_counter() - start, run.embedded)

    def remove_source(self, source: str, workspaces: Scope = None) -> bool:
        """Delete every item of ``source`` (in ``workspaces``; None: all) from every
        corpus, then its thumbnails and keyframes; False if the index had none. Items go
        first: a crash in between leaves unused files (deleted by the next run), never
        items that point at missing ones."""
        with self._versions.unfinished():
            return self._versions.delete(source, keep=None, workspaces=workspaces)

    @property
    def _versions(self) -> Versions:
        return Versions(self.index.store, self.media.media_dir if self.media else None)

    def _is_media(self, path: Path) -> bool:
        return self.media is not None and path.suffix.lower() in MEDIA_SUFFIXES

    # -- the three phases ----------------------------------------------------------

    def _documents(self, run: _Run, files: Sequence[Path]) -> list[Path]:
        """Phase 1: the documents, their passages queued and embedded in batches across
        files. Returns the scanned PDFs, left for phase 2."""
        scans: list[Path] = []
        for path in files:
            if path in scans:  # named twice (a folder and a file in it): read as phase 2 does
                self._scan(run, path)
                continue
            admitted = self._admit(run, path, again=False)
            if admitted is not None and self._document(run, admitted, ocr=False):
                scans.append(path)
        return scans

    def _scans(self, run: _Run, scans: Sequence[Path]) -> None:
        """Phase 2: the scanned PDFs, once the other documents are stored (their OCR
        takes seconds a page); each file is taken up and loaded again."""
        for path in scans:
            self._scan(run, path)

    def _scan(self, run: _Run, path: Path) -> None:
        admitted = self._admit(run, path, again=True)
        if admitted is not None:
            self._flush(run)  # store the documents before OCR starts
            self._document(run, admitted, ocr=True)

    def _media_files(self, run: _Run, files: Sequence[Path]) -> None:
        """Phase 3: images, videos and recordings, one file at a time, each stored whole
        before the next: a long video takes minutes."""
        for path in files:
            admitted = self._admit(run, path, again=False)
            if admitted is None:
                continue
            self._flush(run)  # store the documents before the slow media work starts
            try:
                result = self._media(run.roots.confine(admitted.real), admitted, run)
            except MmragError as e:
                result = FileResult(admitted.source, FileStatus.FAILED, message=str(e))
            except Exception as e:  # an analyser bug must not stop the other files
                result = _unexpected(admitted, e)
            run.embedded += result.passages
            run.emit(result)

    def _prune(self, run: _Run) -> None:
        """Remove the sources inside the named folders that are gone from disk."""
        for source in vanished(run.named, run.held.held):
            self._versions.delete(source, keep=None, workspaces=(run.workspace,))
            run.emit(
                FileResult(
                    source,
                    FileStatus.REMOVED,
                    message=f"{source}: gone from disk, removed from the index",
                )
            )

    # -- one file ------------------------------------------------------------------

    def _admit(self, run: _Run, path: Path, *, again: bool) -> _Admitted | None:
        """Take up a walked file: None (with its result emitted) when it is skipped,
        cannot be read, or is done in its current version.

        Parts of this very version that a killed run stored are deleted first, so it
        starts afresh (what is analysed again need not come out the same, e.g. a video's
        clips); not ``again`` (a scanned PDF's second taking up), whose first did that.
        """
        try:
            real = run.roots.confine(path)
        except OutsideRootError:
            run.skip(str(path), f"{path}: skipped, it links outside the folders being ingested")
            return None
        source = str(real)
        if path not in run.named and path.suffix.lower() not in self.suffixes:
            # A folder holds other files too (sidecars, spreadsheets): report them as
            # skipped; a file named on the command line that cannot be read failed.
            suffix = path.suffix.lower() or "none"
            run.skip(source, f"{path}: skipped, unsupported file type '{suffix}'")
            return None
        linked = path.is_symlink() and source in run.itself
        if linked or run.first_path.setdefault(source, path) != path:
            run.skip(str(path), f"{path}: skipped, a link to {source}, which is ingested once")
            return None
        try:
            digest = file_sha256(run.roots.confine(real))
        except OSError as e:
            run.fail(source, f"{path}: cannot read ({e})")
            return None
        except MmragError as e:
            run.fail(source, str(e))
            return None
        done = run.held.done.get(source, set())
        held = run.held.held.get(source, set())
        here = (run.workspace,)
        if digest in done:
            if held != {digest}:
                # A killed run stored this version but kept older ones (or the file
                # was changed back): delete those; nothing to parse or embed.
                self._versions.delete(source, keep=digest, workspaces=here)
                run.emit(
                    FileResult(
                        source, FileStatus.UPDATED, message=f"{path}: other versions' items removed"
                    )
                )
            else:
                run.emit(FileResult(source, FileStatus.UNCHANGED))
            return None
        if digest in held and len(done) <= 1 and not again:
            self._versions.delete(source, keep=min(done) if done else None, workspaces=here)
        return _Admitted(path, real, source, digest, bool(done), bool(held - {digest}))

    def _document(self, run: _Run, f: _Admitted, *, ocr: bool) -> bool:
        """Load a document and queue its items (its figures are stored now); True when
        it is a scan left for phase 2 (not ``ocr``: its untexted pages are not read)."""
        try:
            doc, read_by_ocr = self._load(f, run, ocr=ocr)
            if doc.untexted_pages and self.media is not None and not ocr:
                return True
            passages, document = document_items(
                f.source, f.digest, doc, workspace=run.workspace,
                target_words=self.target_words, max_words=self.max_words,
            )  # fmt: skip
            item = _Pending(f.source, f.digest, f.replaces, doc, passages, document, stale=f.stale)
        except MmragError as e:
            run.fail(f.source, str(e))
            return False
        except Exception as e:  # a loader bug must not stop the other files
            run.emit(_unexpected(f, e))
            return False
        if self.media is not None and (f.real.suffix.lower() == ".pdf" or doc.images):
            item.figures, item.figure_warnings = self._figures(
                f, run, doc, item.document.id, read_by_ocr
            )
        run.pending.append(item)
        run.queued += len(item.passages)
        if run.queued >= self.batch_size:
            self._flush(run)
        return False

    # -- internals -----------------------------------------------------------------

    def _load(self, f: _Admitted, run: _Run, *, ocr: bool) -> tuple[ParsedDocument, frozenset[int]]:
        """Load a document; with ``ocr``, read the pages of a PDF that have no text layer.

        Returns the document and the pages whose text OCR supplied. Without ``ocr`` a
        document with such pages comes back as loaded (the caller reads it later). A PDF
        with no text at all, even after OCR, is refused with a message that says so.
        """
        path, step = f.real, run.step
        doc = load_file(run.roots.confine(path), self.loaders, also=self.suffixes)
        checkpoint("parse")
        pages = doc.untexted_pages
        if pages and self.media is not None and not ocr:
            return doc, frozenset()
        before = set(pages)
        if pages and self.media is not None:
            on_step = None if step is None else (lambda done: step(f.source, done))
            found = self.media.ocr_pages(run.roots.confine(path), pages, on_step)
            doc = with_page_texts(doc, found, "OCR")
        if not doc.sections and pages:
            why = "and OCR found no text on them" if self.media else "(a scan; OCR is off)"
            raise EmptyDocumentError(
                f"{path}: no text layer on any of its {len(pages)} pages {why}"
            )
        return doc, frozenset(before - set(doc.untexted_pages))

    def _figures(
        self,
        f: _Admitted,
        run: _Run,
        doc: ParsedDocument,
        document_id: str,
        read_by_ocr: frozenset[int],
    ) -> tuple[int, tuple[str, ...]]:
        """Store a document's pictures as image items (one that fails is only skipped).

        A PDF's embedded figures; the local files an HTML or Markdown page shows (inside
        ``roots`` only). They are parts of the document: stored before its passages and
        its document item.
        """
        assert self.media is not None
        path, roots, workspace = f.real, run.roots, run.workspace
        try:
            found = (
                self.media.pdf_figures(
                    roots.confine(path),
                    f.source,
                    f.digest,
                    document_id,
                    doc=doc,
                    skip_pages=read_by_ocr,
                    workspace=workspace,
                )
                if path.suffix.lower() == ".pdf"
                else self.media.linked_images(
                    path, doc.images, f.source, f.digest, document_id, roots, workspace=workspace
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

    def _media(self, path: Path, f: _Admitted, run: _Run) -> FileResult:
        """An image, video or audio file: analyse, store its parts (clips), then the item
        that stands for the whole file, then drop other versions."""
        assert self.media is not None
        source, digest, step, workspace = f.source, f.digest, run.step, run.workspace
        suffix = path.suffix.lower()
        found = (
            self.media.image(path, source, digest, workspace)
            if suffix in IMAGE_SUFFIXES
            else self.media.video(
                path,
                source,
                digest,
                None if step is None else lambda done: step(source, done),
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
        if f.stale:
            self._versions.delete(source, keep=digest, workspaces=(workspace,))
        primary = found.corpus_items.get(Corpus.CLIP) or found.corpus_items.get(Corpus.IMAGE, [])
        return FileResult(
            source,
            FileStatus.UPDATED if f.replaces else FileStatus.ADDED,
            passages=len(primary),
            warnings=found.warnings,
        )

    def _flush(self, run: _Run) -> None:
        """Embed and store the passages of the queued files, then their documents (which
        mark them done), then drop the files' other versions."""
        pending = run.pending
        if not pending:
            return
        run.pending, run.queued = [], 0
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
                self._versions.delete(
                    p.path, keep=p.content_hash, workspaces=(p.document.workspace,)
                )
            run.emit(
                FileResult(
                    p.path,
                    FileStatus.UPDATED if p.replaces else FileStatus.ADDED,
                    passages=len(p.passages),
                    pages=p.doc.page_count,
                    warnings=p.doc.warnings + p.figure_warnings,
                )
            )
        run.embedded += len(passages)


def _unexpected(f: _Admitted, e: Exception) -> FileResult:
    return FileResult(
        f.source, FileStatus.FAILED, message=f"{f.path}: unexpected {type(e).__name__}: {e}"
    )
